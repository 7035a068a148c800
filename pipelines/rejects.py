"""Dead letters: every rejected record goes to ``rejects/<reason>.jsonl``, sorted by (source, index)."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator

import apache_beam as beam


def _sort_key(rej: dict[str, Any]):
    idx = rej.get("index")
    return (str(rej.get("source")), -1 if idx is None else int(idx), str(rej.get("message")))


class _WriteRejectsFn(beam.DoFn):
    def __init__(self, work_dir: str):
        self.work_dir = work_dir

    def process(self, element) -> Iterator[dict[str, Any]]:
        reason, rejects = element
        rejects = sorted(rejects, key=_sort_key)
        rel = f"rejects/{reason}.jsonl"
        path = os.path.join(self.work_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            for rej in rejects:
                f.write(json.dumps(rej, ensure_ascii=False, sort_keys=True, default=repr) + "\n")
        yield {"reason": reason, "count": len(rejects), "path": rel}


class WriteRejects(beam.PTransform):
    """``PCollection[reject dict]`` → one ``{"reason", "count", "path"}`` per reason, files written."""

    def __init__(self, work_dir: str):
        super().__init__()
        self.work_dir = work_dir

    def expand(self, rejects):
        return (rejects
                | "ByReason" >> beam.Map(lambda r: (r["reason"], r))
                | "Group" >> beam.GroupByKey()
                | "Write" >> beam.ParDo(_WriteRejectsFn(self.work_dir)))
