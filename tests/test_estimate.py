"""``trio-designer estimate``: a preview over real HTTP, extrapolated; the server counts."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from _cli_harness import ThreadedSimulator

from trio_designer._core._estimate import ModelPreview, extrapolate, run_time, totals
from trio_designer.cli import main

YAML = """\
providers:
  - {{name: local, base_url: "{url}"}}
models:
  - alias: gen
    model: sim-gen
    provider: local
    max_parallel_requests: 4
    price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
  - {{alias: judge, model: sim-judge, provider: local, rpm: 60}}
run: {{row_group_size: 5, seed: 3, max_requests: 1}}  # budgets: not applied to the preview
columns:
  - {{name: topic, kind: sampler, sampler: category, values: [a, b]}}
  - {{name: text, kind: llm_text, model: gen, prompt: "{{{{ topic }}}}"}}
  - {{name: check, kind: llm_text, model: judge, prompt: "{{{{ text }}}}",
     skip_when: "{{{{ topic == 'a' }}}}"}}
"""


@pytest.mark.slow
def test_estimate_scales_what_the_server_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with ThreadedSimulator(("sim-gen", "sim-judge")) as server:
        Path("p.yaml").write_text(YAML.format(url=server.url))
        code = main(["estimate", "p.yaml", "-n", "1000", "--preview-records", "10", "--json"])
        served = server.requests()
    assert code == 0
    estimate = json.loads(capsys.readouterr().out)
    models = {m["alias"]: m for m in estimate["models"]}
    assert models["gen"]["requests"] == 1000  # one request per row
    checked = models["judge"]["requests"]  # one per row whose topic is not 'a'
    assert served == 10 + checked / 100  # the preview's requests, counted by the server
    assert models["judge"]["cost"] is None  # no price
    assert models["gen"]["cost"] > 0
    assert estimate["total"]["cost"] is None
    # judge: 60 rpm bounds its time
    assert models["judge"]["bound"] == "rpm"
    assert models["judge"]["seconds"] == pytest.approx(checked)
    assert estimate["preview_records"] == 10
    assert any("every row costs" in a for a in estimate["assumptions"])


@pytest.mark.slow
def test_estimate_with_the_simulator_sends_nothing_to_the_config_endpoints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"  # nobody listens there
    Path("p.yaml").write_text(YAML.format(url=dead))
    assert main(["estimate", "p.yaml", "-n", "50", "--preview-records", "5", "--simulator"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("estimate for 50 rows, from a preview of 5 rows (the built-in simulator")
    rows = {line.split()[0]: line.split()[1] for line in text.splitlines()[2:5]}
    assert rows["gen"] == "50"  # one request per row
    assert "tokens and latency are the simulator's" in text


def test_extrapolate_takes_the_slowest_bound_and_sums_costs() -> None:
    previews = [
        ModelPreview(alias="a", requests=4, input_tokens=40, output_tokens=80, cost=0.5,
                     latency_total=2.0, max_parallel_requests=2, tpm=1000),
        ModelPreview(alias="b", requests=0, input_tokens=0, output_tokens=0, cost=0.0,
                     latency_total=0.0, max_parallel_requests=8),
    ]  # fmt: skip
    a, b = extrapolate(previews, preview_rows=4, num_records=400)
    assert (a.requests, a.cost) == (400, 50.0)
    assert a.bound == "tpm"  # 12000 tokens at 1000/min: 720 s; 400 x 0.5 s / 2: 100 s
    assert a.seconds == pytest.approx(720)
    assert (b.requests, b.seconds, b.bound) == (0, 0, "none")
    assert run_time([a, b]) == a.seconds
    assert totals([a, b])["cost"] == 50.0
