"""Each stage's declared reads and writes match its code; the pipelines' order lets every
stage read what an earlier one (or Envoy's message) wrote; docs/pipeline.md is their table."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stage_fields import HOOKS, declared_uses, stage_uses
from extproc.config.filter_config import load_config
from extproc.pipeline.call import Call
from extproc.stages.pipelines import build_mcp_pipeline, build_pipeline, build_upstream_pipeline, pipeline_table

ROOT = Path(__file__).resolve().parent.parent
USES = stage_uses()

# What the runner and the worker fill in before a phase's hooks run (pipeline/runner.py).
GIVEN = {
    # `outcome` stays "pending" until the runner ends the call, in whichever phase.
    "request_headers": {"config", "envoy_features", "started", "reply", "headers", "request_metadata",
                        "envoy_attributes", "outcome"},
    "request_body": {"raw_body"},
    "response_headers": {"response_in_body", "stream_passed_through"},
    "response_body": set(),
    "response_trailers": {"status", "sent_bytes"},
    # At the call's end: how it ended, and the time spent in the service.
    "done": {"status", "error_code", "outcome", "ended_at", "finished", "service_seconds", "message_started"},
}
# Reads the order cannot show are safe, and why.
_SAFE_EARLY_READS = {
    # Read on the response's end only for a stream passed through, which ends with its
    # trailers, where CutStream runs first.
    ("usage", "sent_output_tokens"),
    # A plugin guardrail is told the call's model; an MCP call has none (it reads "").
    ("mcp_gate", "model_name"), ("mcp_answer", "model_name"),
}
# Two messages a call gets one or the other of: a stream passed through ends with its
# trailers, every other answer with its body.
_EXCLUSIVE = {"response_trailers": "response_body"}


@pytest.mark.parametrize("stage", sorted(USES, key=lambda cls: cls.__name__), ids=lambda cls: cls.__name__)
def test_a_stage_declares_exactly_the_fields_its_code_uses(stage):
    found = declared_uses(USES[stage])
    assert set(stage.writes) == found.writes, f"{stage.__name__}.writes: the code writes {sorted(found.writes)}"
    assert set(stage.reads) == found.reads, f"{stage.__name__}.reads: the code reads {sorted(found.reads)}"


def test_the_reader_of_this_test_finds_what_a_stage_uses():
    """The analysis itself: known reads and writes, through helpers in other modules."""
    from extproc.stages.budget.limits import Budget
    from extproc.stages.accounting.usage import ResponseUsage
    usage = USES[ResponseUsage]
    assert {"usage", "provider_answer", "status"} <= usage["response_body"].writes | usage["response_headers"].writes
    assert "generated" in usage["response_body"].writes         # call.generated.extend(...) in response_stream.py
    assert "body" in USES[Budget]["request_body"].writes         # call.body[field] = cap
    assert "output_reserved" in USES[Budget]["request_body"].writes


def _full_config(tmp_path: Path):
    config = yaml.safe_load((ROOT / "config" / "quickstart.yaml").read_text())
    config.pop("identity", None)          # its JWKS file sits beside the quickstart
    config["caps"] = {"per_call": [{"scope": "team", "match": "research", "max_cost_usd_per_call": 0.5}],
                      "session": {"header": "x-session", "ttl_s": 60, "max_cost_usd": 5}}
    config.setdefault("observability", {})["tracing"] = {"otlp_endpoint": "127.0.0.1:4317"}
    config["mcp"]["taint"] = {"model_tools": {"Bash": ["reads_private", "egress"]}}   # the run's taint
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path))


def _pipelines(tmp_path: Path):
    config = _full_config(tmp_path)
    store = object()            # the stages only keep it
    return {"model calls": build_pipeline(config, store), "attempts": build_upstream_pipeline(config),
            "MCP calls": build_mcp_pipeline(config, store)}


def test_every_stage_is_in_a_pipeline_of_the_full_config(tmp_path):
    used = {type(stage) for pipeline in _pipelines(tmp_path).values() for stage in pipeline.stages}
    assert used == set(USES)


def test_each_stage_reads_only_what_was_written_before_it_in_the_call_s_life(tmp_path):
    """Phases in the order Envoy sends them; in a phase, stages in the pipeline's order."""
    fields = {name for name in Call.__slots__ if not name.startswith("_")}
    for label, pipeline in _pipelines(tmp_path).items():
        written = {phase: set(GIVEN[phase]) for phase in HOOKS}
        late = []
        for index, phase in enumerate(HOOKS):
            available = set().union(*(written[earlier] for earlier in HOOKS[:index + 1]
                                      if earlier != _EXCLUSIVE.get(phase)))
            for stage in pipeline.stages:
                uses = USES[type(stage)].get(phase)
                if uses is None:
                    continue
                own = set().union(*(u.writes for u in USES[type(stage)].values()))   # its earlier messages'
                late += [f"{stage.name}.{phase} reads {name}" for name in sorted(uses.reads - available - own)
                         if (stage.name, name) not in _SAFE_EARLY_READS]
                available |= uses.writes
                written[phase] |= uses.writes
        assert not late, f"{label}: read before anything wrote it: {late}"
        assert set().union(*written.values()) <= fields


def test_docs_pipeline_md_is_the_pipelines_table(tmp_path):
    text = (ROOT / "docs" / "pipeline.md").read_text()
    for label, pipeline in _pipelines(tmp_path).items():
        assert pipeline_table(pipeline) in text, f"docs/pipeline.md: the {label} table is not current " \
            f"(python tests/test_stage_state.py prints it)"


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        for label, pipeline in _pipelines(Path(folder)).items():
            print(f"### {label[0].upper() + label[1:]}\n\n{pipeline_table(pipeline)}\n")
