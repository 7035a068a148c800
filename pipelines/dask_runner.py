"""Beam's DaskRunner with three fixes that `im-data prepare` needs.

``--runner dask`` runs on :class:`DaskRunner`, a subclass of
``apache_beam.runners.dask.dask_runner.DaskRunner`` (Beam 2.77). The stock runner translates each Beam
transform to a ``dask.bag`` operation, but (checked against Beam 2.77 with a three-line pipeline, see
``tests/pipeline/test_dask_runner.py``):

1. it computes only the *last* bag of the graph, so a pipeline with several sinks (shards, rejects,
   statistics) runs only one of them;
2. it collects a bundle's outputs *before* calling ``finish_bundle``, so whatever a DoFn emits there is
   lost -- ``beam.BatchElements`` drops the last batch of every partition;
3. it strips the tag of tagged outputs, so a consumer of ``result.rejects`` also receives the main output.

This subclass keeps the stock translations and fixes those three points: it computes every leaf bag,
collects outputs after ``finish_bundle`` and routes tagged outputs to their own consumers only. It also hands
the leaves to Dask together (the stock ``dask.optimize(*leaves)`` first gives each leaf its own copy of the
stages they share, so every record was read and encoded once per sink), and, without ``-v``, keeps Beam's
import-time warnings off the workers' stderr (:mod:`pipelines.dask_logs`). Nothing else changes (same options:
``--dask_client_address``, ``--dask_npartitions``, ...).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import typing as t

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.dask import dask_runner as _stock
from apache_beam.runners.dask import transform_evaluator as _te
from apache_beam.transforms.sideinputs import SideInputMap


def _apply_dofn_to_bundle(items, do_fn_invoker_args, do_fn_invoker_kwargs, tagged_receivers):
    """Like Beam's ``apply_dofn_to_bundle``, but keeps ``finish_bundle`` outputs and output tags."""
    invoker = _te.DoFnInvoker.create_invoker(*do_fn_invoker_args, **do_fn_invoker_kwargs)
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    results = [v if isinstance(v, _te.TaggedOutput) else v.value for v in tagged_receivers.values]
    invoker.invoke_teardown()
    return results


def _select_tag(item, tag):
    if tag is None:
        return not isinstance(item, _te.TaggedOutput)
    return isinstance(item, _te.TaggedOutput) and item.tag == tag


def _untag(item):
    return _te.defenestrate(item.value) if isinstance(item, _te.TaggedOutput) else item


def _multi_output(producer: AppliedPTransform) -> bool:
    return len(producer.outputs) > 1


class DaskRunner(_stock.DaskRunner):
    """Beam's DaskRunner with leaf computation, ``finish_bundle`` outputs and tagged outputs fixed."""

    @staticmethod
    def to_dask_bag_visitor(bag_kwargs=None) -> PipelineVisitor:
        bag_kwargs = bag_kwargs or {}

        @dataclasses.dataclass
        class Visitor(PipelineVisitor):
            bags: dict = dataclasses.field(default_factory=collections.OrderedDict)
            consumed: set = dataclasses.field(default_factory=set)

            def _input_bag(self, value):
                producer = value.producer
                bag = self.bags[producer]
                self.consumed.add(producer)
                if _multi_output(producer):
                    tag = value.tag
                    bag = bag.filter(functools.partial(_select_tag, tag=tag))
                    if tag is not None:
                        bag = bag.map(_untag)
                return bag

            def visit_transform(self, node: AppliedPTransform) -> None:
                op_class = _te.TRANSLATIONS.get(node.transform.__class__, _te.NoOp)
                if op_class is _te.ParDo:
                    op_class = _FixedParDo
                op = op_class(node, bag_kwargs=bag_kwargs)
                kws: dict[str, t.Any] = {"input_bag": None, "side_inputs": None}
                inputs = list(node.inputs)
                if inputs:
                    bag_inputs = []
                    for value in inputs:
                        if isinstance(value, pvalue.PBegin):
                            bag_inputs.append(None)
                        elif value.producer in self.bags:
                            bag_inputs.append(self._input_bag(value))
                    if len(bag_inputs) == 1 and not isinstance(op, _te.Flatten):
                        kws["input_bag"] = bag_inputs[0]
                    else:
                        kws["input_bag"] = bag_inputs
                side_inputs = list(node.side_inputs)
                if side_inputs:
                    kws["side_inputs"] = [
                        SideInputMap(type(si), si._view_options(),
                                     _te.DaskBagWindowedIterator(self._input_bag(si.pvalue), si._window_mapping_fn))
                        for si in side_inputs
                    ]
                self.bags[node] = op.apply(**kws)

            def leaves(self) -> list:
                return [bag for node, bag in self.bags.items() if node not in self.consumed and bag is not None]

        return Visitor()

    def run_pipeline(self, pipeline, options):
        import dask
        import dask.distributed as ddist

        dask_options = options.view_as(_stock.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = _stock.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        if logging.getLogger("im_data").getEffectiveLevel() > logging.INFO:  # without -v: no import-time warnings
            from .dask_logs import QuietBeamImports

            client.register_plugin(QuietBeamImports())
        pipeline.replace_all(_stock.dask_overrides())
        visitor = self.to_dask_bag_visitor(bag_kwargs)
        pipeline.visit(visitor)
        # the leaves computed together, so the stages they share run once (``dask.optimize(*leaves)`` first, as
        # the stock runner does, gives each leaf its own copy of the shared stages: every record read and
        # encoded once per sink)
        futures = client.compute(visitor.leaves())
        return _stock.DaskRunnerResult(client, futures)


class _FixedParDo(_te.ParDo):
    """Beam's ParDo translation with :func:`_apply_dofn_to_bundle` as the partition function."""

    def apply(self, input_bag, side_inputs=None):
        transform = t.cast(beam.ParDo, self.transform)
        args, kwargs = transform.raw_side_inputs
        main_input = next(iter(self.applied.main_inputs.values()))
        window_fn = main_input.windowing.windowfn if hasattr(main_input, "windowing") else None
        tagged_receivers = _te.OneReceiver()
        invoker_args = [
            _te.DoFnSignature(transform.fn),
            _te._OutputHandler(
                window_fn=window_fn,
                main_receivers=tagged_receivers[None],
                tagged_receivers=tagged_receivers,
                per_element_output_counter=None,
                output_batch_converter=None,
                process_yields_batches=False,
                process_batch_yields_elements=False),
        ]
        invoker_kwargs = dict(
            context=_te.DoFnContext(transform.label, state=None),
            side_inputs=side_inputs,
            input_args=list(args),
            input_kwargs=kwargs,
            user_state_context=None,
            bundle_finalizer_param=beam.DoFn.BundleFinalizerParam(),
        )
        return input_bag.map(_te.get_windowed_value, window_fn).map_partitions(
            _apply_dofn_to_bundle, invoker_args, invoker_kwargs, tagged_receivers)
