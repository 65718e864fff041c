"""`lookalike serve`: the HTTP API and web page on uvicorn. Mounted in `api/cli.py` as a command.

Also runnable alone: `python -m lookalike.api.cli_serve --index DIR`.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lookalike.api.console import errors_to_exit, stderr_console
from lookalike.api.options import IndexOpt
from lookalike.api.remote import find_server
from lookalike.api.server_file import local_url, remove_record, write_record

if TYPE_CHECKING:
    import socket

    import uvicorn

    from lookalike.api.server_file import ServerRecord


def serve(
    index: IndexOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Turn writes on: adding and deleting items needs this X-API-Key header "
            "(without a key the server takes no writes). Default: the setting serve.api_key "
            "(env LOOKALIKE_API_KEY).",
        ),
    ] = None,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Take no writes, even with --api-key (needed to listen beyond this machine "
            "without a key).",
        ),
    ] = False,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest photo accepted, in MiB.")
    ] = 20.0,
    catalogue_root: Annotated[
        Path | None,
        typer.Option(
            "--catalogue-root",
            help="Folder that image paths of items added through the API may refer to "
            "(without it, only URLs and uploaded photos are accepted).",
        ),
    ] = None,
    image_timeout: Annotated[
        float,
        typer.Option(
            "--image-timeout",
            min=0.1,
            help="Longest download of one image URL of an added item, redirects included, in "
            "seconds (a whole-download deadline).",
        ),
    ] = 30.0,
    allow_image_network: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-image-network",
            help="A network (10.0.0.0/8) or address whose image URLs may be fetched although not "
            "public; repeatable. By default only public addresses are fetched.",
        ),
    ] = None,
    search_threads: Annotated[
        int,
        typer.Option(
            "--search-threads",
            help="Searches running at once; more wait their turn (each already uses every core).",
        ),
    ] = 2,
    models_mirror: Annotated[
        Path | None,
        typer.Option(
            "--models-mirror", help="Folder of model files tried before cache and network."
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Where the vectors live (edge, qdrant://HOST:6333/COLLECTION, ...); default: "
            "what the index records.",
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info, debug.")
    ] = "info",
) -> None:
    """Serve the HTTP API (docs at /docs) and the web page (at /) for an index."""
    with errors_to_exit():
        import uvicorn

        from lookalike.api.http import MiB, create_app
        from lookalike.api.remote_images import FetchPolicy
        from lookalike.config import Settings
        from lookalike.engine.core import Engine
        from lookalike.errors import QueryError, StoreError

        settings = Settings().replace(models_mirror=models_mirror) if models_mirror else Settings()
        if api_key is None and settings.serve.api_key is not None:
            api_key = settings.serve.api_key.get_secret_value()
        if not api_key and not read_only and not _is_loopback(host):
            # Checked before anything loads: a server open to the network must say who may write.
            raise QueryError(
                f"refusing to listen on {host} without --api-key: others could reach it. Give "
                "--api-key KEY (or LOOKALIKE_API_KEY) to allow writes with that key, or "
                "--read-only to serve searches only"
            )
        try:
            policy = FetchPolicy.allowing(
                allow_image_network or (),
                deadline_s=image_timeout,
                max_bytes=int(max_upload_mb * MiB),
            )
        except ValueError as exc:
            raise QueryError(f"--allow-image-network: {exc}") from None
        engine = Engine(index or settings.index, settings=settings, store_spec=store)
        from lookalike.engine.manifest import FaceManifest

        # An index folder of faces only (`lookalike faces index`) is served too: "Find people".
        faces_only = engine.manifest is None and (engine.index_dir / FaceManifest.FILENAME).exists()
        if engine.manifest is None and not faces_only:
            raise StoreError(
                f"no index at {engine.index_dir}: run `lookalike index CATALOGUE --index "
                f"{engine.index_dir}` (products) or `lookalike faces index PHOTOS --index "
                f"{engine.index_dir}` (people) first, or pass --index"
            )
        running = find_server(engine.index_dir)
        if running is not None:
            running.close()
            raise StoreError(
                f"{engine.index_dir} is already served by {running.describe()}; the CLI's "
                "commands on it go through that server"
            )
        con = stderr_console()
        secret = secrets.token_urlsafe(32)
        app = create_app(
            engine,
            api_key=api_key,
            read_only=read_only,
            max_upload_bytes=int(max_upload_mb * MiB),
            catalogue_root=catalogue_root,
            search_threads=search_threads,
            local_secret=secret,
            image_fetch=policy,
        )
        if read_only:
            con.print(
                "read-only: no writes, not even from the `lookalike` commands of this machine"
            )
        elif not api_key:
            con.print(
                "writes are off for other clients (no --api-key); the `lookalike` commands of "
                "this machine write through this server"
            )
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level)
        with engine:
            if not faces_only:
                _ = engine.store  # open it now: a store another process holds is an error here
            try:
                _run_server(config, engine.index_dir, secret)
            finally:
                app.state.index_jobs.shutdown()


def _run_server(config: uvicorn.Config, index_dir: Path, secret: str) -> None:
    """Run uvicorn, leaving `<index>/server.json` for the CLI once the port is bound (so a CLI
    that finds the file can connect; port 0 is recorded as the port chosen) and removing it
    first thing when the server stops cleanly."""
    import uvicorn

    class LocalServer(uvicorn.Server):
        record: ServerRecord | None = None

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and not self.should_exit:
                bound = self.servers[0].sockets[0].getsockname() if self.servers else None
                port = bound[1] if bound else self.config.port
                host = self.config.host
                shown = f"[{host}]" if ":" in host else host
                stderr_console().print(
                    f"serving {index_dir} at http://{shown}:{port}/  (API docs: /docs)"
                )
                try:
                    self.record = write_record(index_dir, local_url(self.config.host, port), secret)
                except OSError as exc:  # a read-only index folder: serve, but say what it costs
                    stderr_console().print(
                        f"[yellow]warning:[/yellow] cannot write {index_dir}/server.json "
                        f"({exc.strerror or exc}): the CLI cannot use this index while it is served"
                    )

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if self.record is not None:  # a CLI must not pick a server that is leaving
                remove_record(index_dir, self.record)
                self.record = None
            await super().shutdown(sockets)

    LocalServer(config).run()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


if __name__ == "__main__":
    typer.run(serve)
