"""The `earmark` command: one verb per stage, each implemented by the stage that owns it.

A verb's module exposes ``configure(parser)`` and ``run(args) -> int``; it is imported only
when that verb runs, so `earmark listen` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "data": ("earmark.audio.cli_data", "make the demo dataset or check a manifest"),
    "complexity": ("earmark.students.cli_complexity", "parameters, MACs and bytes against the DCASE limits"),
    "convert": ("earmark.cli_convert", "convert an official teacher or TF-SepNet checkpoint into an earmark checkpoint"),
    "pretrain": ("earmark.teachers.cli_pretrain", "self-supervised teacher pretraining (ACM-SSKD, ASiT, ATST, BEATs)"),
    "finetune": ("earmark.teachers.cli_finetune", "fine-tune a teacher on a labelled manifest"),
    "predict": ("earmark.teachers.cli_predict", "write a teacher-output cache for a manifest"),
    "distill": ("earmark.distill.cli", "distil a teacher into a student, optionally with QAT"),
    "export": ("earmark.export.cli_export", "export a checkpoint to ONNX or a TensorRT engine"),
    "bench": ("earmark.export.cli_bench", "latency and throughput of exported models"),
    "eval": ("earmark.evaluation.cli", "accuracy/mAP on clips, event F1 and PSDS on soundscapes, of a checkpoint or .onnx"),
    "listen": ("earmark.runtime.cli", "live scene and event detection from a microphone, file or stdin"),
    "demo": ("earmark.demo", "teacher -> student -> INT8 ONNX -> live detection on synthetic data"),
}


def _load(verb: str):
    module_name = VERBS[verb][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; verb options are added only for the verb being run."""
    parser = argparse.ArgumentParser(prog="earmark", description="Distil big audio teachers into tiny students that listen live on the edge.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        sub.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0] not in VERBS:
        parser.parse_args(argv or ["--help"])
        return 2
    verb = argv[0]
    module = _load(verb)
    if module is None:
        print(f"earmark {verb}: not built yet in this version.", file=sys.stderr)
        return 2
    verb_parser = argparse.ArgumentParser(prog=f"earmark {verb}", description=VERBS[verb][1])
    module.configure(verb_parser)
    args = verb_parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if getattr(err, "earmark_user_error", True):
            print(f"earmark {verb}: {err}", file=sys.stderr)
            return 1
        raise
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
