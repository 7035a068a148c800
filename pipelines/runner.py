"""Running a Beam pipeline for ``prepare`` and ``audit``: the runner from :class:`RunnerOptions`, the Beam
``PipelineOptions``, and the tear-down of what was started for the run (a Dask client or LocalCluster)."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from .options import RunnerOptions


def split_pipeline_options(pipeline_options: Any = None) -> tuple[list[str], dict[str, Any]]:
    """Beam pipeline options as ``(flags, keyword values)``: from ``None``, a list of command-line flags
    (``["--direct_num_workers", "2"]``) or a ``PipelineOptions``."""
    if pipeline_options is None:
        return [], {}
    if isinstance(pipeline_options, (list, tuple)):
        return [str(a) for a in pipeline_options], {}
    from apache_beam.options.pipeline_options import PipelineOptions

    if isinstance(pipeline_options, PipelineOptions):
        return [], pipeline_options.get_all_options(drop_default=True, retain_unknown_options=True)
    raise TypeError(f"pipeline_options must be a PipelineOptions or a list of flags, got {type(pipeline_options)}")


def _quiet_dask() -> bool:
    """Hide dask/distributed INFO chatter unless im-data runs with ``-v`` (importing distributed resets its
    loggers' levels, so this runs after the import). Returns whether to silence."""
    import distributed  # noqa: F401 - configures its loggers on import

    quiet = logging.getLogger("im_data").getEffectiveLevel() > logging.INFO
    if quiet:
        for name in ("distributed", "dask"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return quiet


TYPE_CHECK_ENV = "IM_DATA_BEAM_TYPE_CHECK"
"""Set to 1 (the test suite does) to run every pipeline with Beam's pipeline and runtime type checks: an element
that does not fit the type its transform states fails the run. (That every transform of ours states one is
checked by tests/pipeline/test_type_hints.py; Beam's own ``BatchElements`` states none, so the strictness
``ALL_REQUIRED`` cannot be used.)"""


def type_check_flags(given: set[str]) -> list[str]:
    """Beam's flags for pipeline and runtime type checks (those not ``given`` already)."""
    return [f"--{flag}" for flag in ("pipeline_type_check", "runtime_type_check") if flag not in given]


def runner_and_options(runner: RunnerOptions, pipeline_options: Any = None):
    """``(runner, PipelineOptions, LocalCluster or None)`` for one run."""
    from apache_beam.options.pipeline_options import PipelineOptions

    name = (runner.runner or "direct").strip()
    beam_args, values = split_pipeline_options(pipeline_options)
    given = {a.lstrip("-").split("=", 1)[0] for a in beam_args if a.startswith("--")} | set(values)
    cluster = None
    if os.environ.get(TYPE_CHECK_ENV, "") not in ("", "0"):
        beam_args += type_check_flags(given)
    if "default_sdk_harness_log_level" not in given and logging.getLogger("im_data").getEffectiveLevel() > logging.INFO:
        beam_args.append("--default_sdk_harness_log_level=ERROR")  # worker processes' chatter: only with -v
    if name.lower() in ("direct", "directrunner"):
        chosen: Any = "DirectRunner"
    elif name.lower() in ("dask", "daskrunner"):
        from .dask_runner import DaskRunner

        chosen = DaskRunner()
        if not given & {"dask_npartitions", "dask_partition_size"}:
            beam_args.append("--dask_partition_size=1")  # one read split per Dask partition
        address = runner.dask_address
        if address is None and not given & {"dask_client_address", "dask_scheduler_file"}:
            from distributed import LocalCluster

            quiet = _quiet_dask()
            cluster = LocalCluster(n_workers=runner.dask_workers or os.cpu_count() or 1, threads_per_worker=1,
                                   processes=True, host="127.0.0.1", dashboard_address=None,
                                   # its HTTP server (always started) on a free port: no "8787 in use" warning
                                   scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.ERROR if quiet else logging.INFO)
            address = cluster.scheduler_address
        if address is not None:
            beam_args.append(f"--dask_client_address={address}")
        _quiet_dask()
    else:
        chosen = name
    return chosen, PipelineOptions(beam_args, **values), cluster


def run_beam(runner: RunnerOptions, pipeline_options: Any, build: Callable[[Any], None]) -> None:
    """Apply ``build(pipeline)``, run it to completion and tear down what was started for it."""
    import apache_beam as beam

    chosen, options, cluster = runner_and_options(runner, pipeline_options)
    try:
        p = beam.Pipeline(runner=chosen, options=options)
        build(p)
        result = p.run()
        try:
            result.wait_until_finish()
        finally:
            client = getattr(result, "client", None)
            if client is not None:
                client.close()
    finally:
        if cluster is not None:
            cluster.close()
