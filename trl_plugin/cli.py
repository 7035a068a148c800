"""`im-sft`: `trl sft` with per-token loss weights.

Accepts every `trl sft` argument, the `WeightedSFTConfig` fields (`--loss_weights_column`, `--loss_normalization`,
`--segment_metrics`, `--roles_column`) and the `accelerate launch` arguments, and launches `trl_plugin.train` the way
`trl sft` launches its script: through `accelerate launch` (`--num_processes`, `--config_file`, `--accelerate_config
zero2`, ...).

    im-sft --model_name_or_path MODEL --dataset_name OUT_DIR --output_dir RUN [--loss_normalization sequence]

`--dataset_name` may be an `im-data prepare` output directory, local or a URL such as `s3://bucket/prepared` (found
through its manifest.json).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _subtract_subsequence(items: list[str], subsequence: list[str]) -> list[str]:
    from trl.cli.commands.training import _subtract_subsequence as trl_subtract

    return trl_subtract(items, subsequence)


def main(argv: list[str] | None = None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from trl.cli.accelerate_config import resolve_accelerate_config_argument

    from .train import make_parser

    all_args = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(prog="im-sft")
    # -h/--help prints every field (TRL's and ours) and exits; unknown strings go to `accelerate launch`
    *_, config_remaining, cli_remaining = parser.parse_args_and_config(
        all_args, return_remaining_strings=True, separate_remaining_strings=True
    )
    launch_args = resolve_accelerate_config_argument(config_remaining + cli_remaining)
    training_args = _subtract_subsequence(all_args, cli_remaining)

    # The launched process must import trl_plugin even when it is not installed (a source checkout)
    root = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    accelerate_args = launch_command_parser().parse_args(launch_args + ["-m", "trl_plugin.train"] + training_args)
    launch_command(accelerate_args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
