"""Teacher sizes against their papers, output shapes and rates, layer-wise heads against their equations."""

import pytest
import torch

from earmark.teachers import LayerWiseHead, TeacherClassifier, create_teacher
from earmark.teachers.ssl_heads import LightDecoder


def _params(name, **overrides):
    with torch.device("meta"):
        return sum(p.numel() for p in create_teacher(name, **overrides).parameters())


@pytest.mark.parametrize("name, low, high", [
    ("beats_base", 88e6, 92e6),  # BEATs: about 90M
    ("asit_small", 21e6, 23e6),  # ASiT ViT-S backbone: about 22M
    ("asit_base", 84e6, 87e6),  # ASiT ViT-B backbone: about 85M
    ("ssast_patch_base", 85e6, 90e6),  # SSAST base: 86-89M
    ("ast_base", 85e6, 90e6),  # AST base (DeiT-B, 1214 patches)
    ("atst_frame_base", 84e6, 87e6),  # ATST-Frame base (ViT-B)
    ("ssast_patch_tiny", 5e6, 7e6),  # SSAST tiny: about 6M
    ("ssast_frame_tiny", 5e6, 7e6),
])
def test_base_sizes_match_the_papers(name, low, high):
    assert low <= _params(name) <= high


def test_acmsskd_with_its_light_decoder_is_about_92m():
    with torch.device("meta"):
        decoder = sum(p.numel() for p in LightDecoder(768).parameters())
    assert 90e6 <= _params("acmsskd_base") + decoder <= 94e6


@pytest.mark.parametrize("name, tokens, frames, hop", [
    ("beats_tiny", 496, 62, 0.16),  # 10 s -> 998 frames -> 62 x 8 patches
    ("atst_frame_tiny", 250, 250, 0.04),  # 40 ms tokens, 25 Hz
    ("asit_tiny", 296, 37, 0.16),  # ASiT's loader cuts to its 592 frames: 37 x 8 patches
    ("ast_tiny", 1212, 100, 0.10),  # AST's loader pads 998 frames to 1024: 12 x 101 patches, 100 start inside the clip
])
def test_ten_seconds_give_the_documented_tokens(name, tokens, frames, hop):
    model = create_teacher(name).eval()
    spec = model.frontend
    out = model(torch.randn(1, 1, spec.n_mels, spec.num_frames(10 * spec.sample_rate)))
    assert out.tokens.shape[1] == tokens and out.frame_embedding.shape[1] == frames
    assert out.frame_hop_seconds == pytest.approx(hop) and len(out.layers) == 2


def test_layerwise_heads_follow_the_equations():
    torch.manual_seed(0)
    layers = [torch.randn(2, 5, 8) for _ in range(3)]
    for kind in ("prenorm", "postnorm", "doublenorm"):
        head = LayerWiseHead(8, 3, 4, kind)
        with torch.no_grad():
            head.alpha.copy_(torch.tensor([0.5, -1.0, 2.0]))
        w = torch.softmax(torch.tensor([0.5, -1.0, 2.0]), 0)
        e = [l.mean(1) for l in layers]  # e_l: token mean of layer l
        if kind in ("prenorm", "doublenorm"):
            e = [torch.nn.functional.layer_norm(x, (8,)) for x in e]  # fresh LayerNorms are the plain normalisation
        h = sum(wi * ei for wi, ei in zip(w, e))
        if kind in ("postnorm", "doublenorm"):
            h = torch.nn.functional.layer_norm(h, (8,))
        assert torch.allclose(head(layers), head.mlp(h), atol=1e-6)


@pytest.mark.parametrize("head", ["linear", "cls", "prenorm", "doublenorm"])
def test_classifier_heads_fill_logits(head):
    model = TeacherClassifier(create_teacher("asit_tiny"), 5, head, task="frame").eval()
    out = model(torch.randn(2, 1, 128, 200))  # padded to 592 frames; 13 patches start inside the 200
    assert out.clip_logits.shape == (2, 5) and out.frame_logits.shape == (2, 13, 5)


def test_no_family_is_named_outside_its_module():
    """Registry, converter flow, heads, checkpoints and the convert verb hold no per-family code (docs/architecture.md)."""
    import re
    from pathlib import Path

    import earmark
    from earmark.teachers.registry import FAMILY_MODULES, families

    root = Path(earmark.__file__).parent
    names = {name.split("_")[0] for family in families().values() for name in family.variants} | set(FAMILY_MODULES)
    for module in ("teachers/registry.py", "teachers/convert.py", "teachers/heads.py", "teachers/checkpoint.py", "teachers/pretrainedsed.py",
                   "cli_convert.py"):
        code = [line.split("#")[0] for line in (root / module).read_text().splitlines()
                if not line.startswith("FAMILY_MODULES") and not line.strip().startswith(('"', "help="))]
        found = {n for n in names for line in code if re.search(rf"[\"'.]{n}[\"'._]", line)}
        assert not found, f"{module} names the families {sorted(found)}"
