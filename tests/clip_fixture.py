"""A tiny, randomly initialised CLIP on disk in the layout of the Hub's ONNX exports.

`build_tiny_clip(dest)` writes what `ClipEmbedder` reads from a real export such as
Xenova/fashion-clip, built offline so tests never touch the network:

    vision_model.onnx   pixel_values (N, 3, 224, 224) float32 -> image_embeds (N, P), last_hidden_state
    text_model.onnx     input_ids (N, L) int64 [, attention_mask (N, L) int64]
                        -> text_embeds (N, P), last_hidden_state
    tokenizer.json      CLIP-style byte-level BPE: NFC + whitespace folding + lowercase,
                        `</w>` word suffix, `<|startoftext|>` / `<|endoftext|>` added last
    reference/          the torch `CLIPModel` (save_pretrained) the ONNX files were exported from,
                        so a test can compute golden outputs on any input

The architecture is the real one (transformers' `CLIPModel`); only the sizes are small.
torch and transformers are needed here, never by the library at run time.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

PROJECTION_DIM = 16
"""Length of the tiny model's image and text embeddings."""

START, END = "<|startoftext|>", "<|endoftext|>"

# A small catalogue-ish corpus: enough to learn a few hundred merges, short enough to train in
# milliseconds. Mixed case and extra spaces exercise the normaliser.
CORPUS = [
    "a photo of a red midi dress",
    "a photo of a blue denim jacket",
    "black leather ankle boots with a block heel",
    "white cotton t-shirt, crew neck",
    "Striped linen shirt in navy and white",
    "a floral summer dress with short sleeves",
    "grey wool coat, double breasted",
    "running shoes in bright orange",
    "a straw hat with a black ribbon",
    "slim fit chinos, beige",
    "a knitted jumper in cream",
    "gold hoop earrings",
    "a silver watch with a leather strap",
    "a canvas tote bag",
    "high waisted jeans, light wash",
    "a silk scarf with a paisley print",
    "red   sneakers   with white soles",
    "a green parka with a fur hood",
    "pleated skirt in burgundy",
    "a yellow raincoat",
    "men's brown loafers",
    "women's black evening gown",
    "a pair of sunglasses with round frames",
    "a photo of a cat wearing a tiny hat",
    "a dog in a red jumper",
    "kids' rain boots, 2 pairs",
    "size 38 sandals for 49.99",
    "a tailored suit in charcoal",
    "a hoodie with a zip, oversized",
    "sports bra and leggings set",
    "a photo of a handbag on a table",
    "Vintage denim shorts, distressed",
]


def _tokenizer(vocab_size: int) -> object:
    """Train a CLIP-style BPE on `CORPUS`.

    The learned merges are stable, but `tokenizers` numbers tied single-character tokens in hash
    order, so ids can differ between two trainings: models meant to share a vocabulary must share
    the file (see `build_tiny_clip(tokenizer_from=...)`).
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    # Words, single digits and runs of punctuation become pre-tokens; whitespace is dropped.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"), "removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    # As in OpenAI's vocabulary, the two special tokens take the last ids, after training.
    tok.add_special_tokens([START, END])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{START} $A {END}",
        special_tokens=[(START, tok.token_to_id(START)), (END, tok.token_to_id(END))],
    )
    return tok


def build_tiny_clip(
    dest: Path,
    *,
    attention_mask: bool = True,
    named_outputs: bool = True,
    tokenizer_from: Path | None = None,
) -> Path:
    """Write a tiny CLIP (ONNX towers, tokenizer.json, torch reference) to `dest`; return `dest`.

    The weights depend only on a fixed seed; with the same tokenizer two calls build the same model.
    attention_mask: whether text_model.onnx takes an `attention_mask` input (some exports do not).
    named_outputs: `image_embeds` / `text_embeds` as output names, else generic names
        (`embeds`, `hidden`), to exercise the embedder's fall-back to the 2-D output.
    tokenizer_from: a directory of an earlier build whose tokenizer.json to reuse instead of
        training a new one (same vocabulary, hence the same text vectors).
    """
    import torch
    from transformers import CLIPConfig, CLIPModel

    dest.mkdir(parents=True, exist_ok=True)
    if tokenizer_from is None:
        _tokenizer(vocab_size=600).save(str(dest / "tokenizer.json"))
    else:
        shutil.copy(tokenizer_from / "tokenizer.json", dest / "tokenizer.json")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(dest / "tokenizer.json"))

    end_id = tok.token_to_id(END)
    config = CLIPConfig(
        text_config={
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tok.token_to_id(START),
            "eos_token_id": end_id,
            "pad_token_id": end_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 32,
        },
        projection_dim=PROJECTION_DIM,
    )
    # Eager attention traces into plain MatMul/Softmax, which every opset-17 runtime executes.
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    model.save_pretrained(dest / "reference")

    class Vision(torch.nn.Module):
        """pixel_values -> (image_embeds, last_hidden_state), like CLIPVisionModelWithProjection."""

        def __init__(self, clip: CLIPModel) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.clip.vision_model(pixel_values=pixel_values)
            return self.clip.visual_projection(out.pooler_output), out.last_hidden_state

    class Text(torch.nn.Module):
        """input_ids [, attention_mask] -> (text_embeds, last_hidden_state)."""

        def __init__(self, clip: CLIPModel) -> None:
            super().__init__()
            self.clip = clip

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask)
            return self.clip.text_projection(out.pooler_output), out.last_hidden_state

    image_out = ["image_embeds", "last_hidden_state"] if named_outputs else ["embeds", "hidden"]
    text_out = ["text_embeds", "last_hidden_state"] if named_outputs else ["embeds", "hidden"]
    batch = {0: "batch_size"}
    seq = {0: "batch_size", 1: "sequence_length"}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about Python branches on shapes (image size check, position limit,
        # mask padding); each takes the same side for every input these graphs accept.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Vision(model).eval(),
            (torch.zeros(2, 3, 224, 224),),
            str(dest / "vision_model.onnx"),
            input_names=["pixel_values"],
            output_names=image_out,
            dynamic_axes={"pixel_values": batch, image_out[0]: batch, image_out[1]: batch},
            opset_version=17,
            dynamo=False,
        )
        # Sample ids end in the EOS id so the pooling (first EOS position) traces as it runs.
        ids = torch.tensor([[tok.token_to_id(START), 5, 6, end_id, end_id]] * 2, dtype=torch.int64)
        text_in = ["input_ids", "attention_mask"] if attention_mask else ["input_ids"]
        sample = (ids, torch.ones_like(ids)) if attention_mask else (ids,)
        torch.onnx.export(
            Text(model).eval(),
            sample,
            str(dest / "text_model.onnx"),
            input_names=text_in,
            output_names=text_out,
            dynamic_axes={**dict.fromkeys(text_in, seq), text_out[0]: batch, text_out[1]: seq},
            opset_version=17,
            dynamo=False,
        )
    return dest


def load_reference(dest: Path) -> object:
    """The torch `CLIPModel` that `build_tiny_clip(dest)` exported (from local files only)."""
    from transformers import CLIPModel

    return CLIPModel.from_pretrained(dest / "reference", local_files_only=True).eval()
