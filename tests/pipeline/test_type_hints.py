"""Beam's coders are inferred from the types that transforms state, so every transform of ours states the type
of what it emits (``Any`` where a pickled element is meant): an inferred coder that does not fit the elements broke
``audit`` on apache-beam 2.78. The suite runs every pipeline with Beam's pipeline and runtime type checks on
(``IM_DATA_BEAM_TYPE_CHECK``, set in tests/conftest.py), so an element that does not fit its stated type fails."""

from __future__ import annotations

import dataclasses

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.core import CallableWrapperDoFn, _MultiParDo

from im_data import WeightPolicy
from pipeline_helpers import DATA
from pipelines.audit import build_audit_pipeline
from pipelines.build import build_pipeline
from pipelines.config import PrepareConfig
from pipelines.options import EncoderOptions
from pipelines.read import expand_inputs
from pipelines.runner import TYPE_CHECK_ENV, runner_and_options
from pipelines.options import RunnerOptions
from pipelines.stats import SampleRowsFn


def _config(tmp_path) -> PrepareConfig:
    encoder = EncoderOptions(policy=WeightPolicy.preset("im"), max_length=64)
    return PrepareConfig(sources=expand_inputs([str(DATA / "bad.jsonl")]), work_dir=str(tmp_path / "work"),
                         encoder=encoder, num_shards=2, progress_dir=str(tmp_path / "progress"))


def _ours(node) -> bool:
    """A transform of our code: a composite defined in ``pipelines``, or a ParDo running a DoFn defined there."""
    transform = node.transform
    if isinstance(transform, beam.ParDo) and not isinstance(transform.fn, CallableWrapperDoFn):
        return type(transform.fn).__module__.startswith("pipelines.")
    return type(transform).__module__.startswith("pipelines.")


class _Ours(PipelineVisitor):
    """Every transform that our code applies (at the top level or inside a composite of ours), and whether it
    states its output type. Beam's own composites are looked at, not into."""

    def __init__(self):
        self.stated, self.unstated = [], []

    def _look(self, node):
        parent = node.parent
        if node.transform is None or (parent is not None and parent.transform is not None and not _ours(parent)):
            return
        transform = node.transform
        if isinstance(transform, _MultiParDo):  # ParDo(...).with_outputs(...): the ParDo states them
            transform = transform._do_transform
        hints = transform.get_type_hints()
        (self.stated if hints.output_types is not None else self.unstated).append(node.full_label)

    def visit_transform(self, node):
        self._look(node)

    def enter_composite_transform(self, node):
        self._look(node)


@pytest.mark.parametrize("which", ["prepare", "prepare_every_stage", "audit"])
def test_every_transform_of_ours_states_its_output_type(tmp_path, which):
    p = beam.Pipeline(runner="DirectRunner")
    if which == "prepare":
        build_pipeline(p, _config(tmp_path))
    elif which == "prepare_every_stage":  # mixture, dedup, decontamination and packing in the graph too
        config = _config(tmp_path)
        config = dataclasses.replace(config, mixture=((config.sources[0].label, 0.5),), dedup="exact",
                                     decontaminate=(str(DATA / "bad.jsonl"),), pack_length=64)
        build_pipeline(p, config)
    else:
        build_audit_pipeline(p, [_config(tmp_path)], str(tmp_path / "results"), sample_size=10)
    seen = _Ours()
    p.visit(seen)
    assert len(seen.stated) >= 15, seen.stated  # the visitor did find our transforms
    if which == "prepare_every_stage":
        assert {"SampleMixture", "DedupExact", "Decontaminate", "PackShards"} <= set(seen.stated), seen.stated
    assert seen.unstated == [], f"transforms that state no output type: {seen.unstated}"


def test_the_suite_runs_pipelines_with_beam_type_checks():
    """tests/conftest.py turns the checks on; the launcher's options then carry them."""
    import os

    assert os.environ.get(TYPE_CHECK_ENV) == "1"
    _, options, _ = runner_and_options(RunnerOptions())
    types = options.view_as(TypeOptions)
    assert types.pipeline_type_check and types.runtime_type_check


def test_sample_rows_takes_lists_and_emits_rows(type_checked_pipeline):
    """The audit's length sample: lists of (instruction, output) pairs in, one list of pairs out; with runtime type
    checks on, a wrong stated type (the base class's ``T`` → ``list[T]``) would fail here."""
    batches = [[(1, 2), (3, 4)], [(5, 6)]]
    with type_checked_pipeline() as p:
        sample = (p | beam.Create(batches).with_output_types(list[tuple[int, int]])
                  | beam.CombineGlobally(SampleRowsFn(10)).without_defaults())
        assert_that(sample | beam.Map(sorted).with_output_types(list[tuple[int, int]]),
                    equal_to([[(1, 2), (3, 4), (5, 6)]]))


def test_runtime_type_check_catches_a_wrong_stated_type(type_checked_pipeline):
    """The checks are really on: an element that contradicts its transform's stated type fails the run."""
    with pytest.raises(Exception, match="Runtime type violation") as err:
        with type_checked_pipeline() as p:
            _ = p | beam.Create([1, 2]).with_output_types(int) | beam.Map(lambda x: f"{x}").with_output_types(int)
    assert "<class 'int'>" in str(err.value) and "<class 'str'>" in str(err.value)
