"""The dashboard in headless Chromium, walked through the way a person would use it.

Needs Debian's chromium and Playwright's Python client (`bash scripts/browser.sh`). Skipped with the
reason when they are missing, except in CI (CI=true), where it fails. Screenshots of every page are
saved under this test's tmp folder (printed at the end) to be looked at.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import serve_in_thread, tiny_run_config
from tests.ui.helpers import fake_run

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip

pytestmark = pytest.mark.slow


def _browser_or_skip() -> None:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        reason = "browser test needs " + " and ".join(missing) + "; run scripts/browser.sh"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def _inked_pixels(page, selector: str) -> int:
    """Pixels of a canvas that are neither blank nor white: an empty chart has axes but no curve."""
    return page.evaluate(
        """sel => { const c = document.querySelector(sel); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) { const [r, g, b, a] = [d[i], d[i+1], d[i+2], d[i+3]];
        if (a > 0 && (Math.abs(r - g) > 40 || Math.abs(g - b) > 40 || Math.abs(r - b) > 40)) n++; } return n; }""",
        selector,
    )


def test_dashboard_in_a_real_browser(tmp_path, tiny_model_dir, train_file, request):
    _browser_or_skip()
    from playwright.sync_api import expect, sync_playwright

    from chattune.train import run
    from chattune.ui.app import create_app

    root = tmp_path / "runs"
    t0 = time.monotonic()

    def stop_jobs() -> None:  # a failed test must not leave its training process running
        from chattune.ui.jobs import Jobs

        jobs = Jobs(root / ".ui", tmp_path)
        for job in jobs.list():
            if job["state"] == "running":
                jobs.stop(job["id"])

    request.addfinalizer(stop_jobs)
    run(
        tiny_run_config(tiny_model_dir, train_file, tmp_path, "train.log_every=1", "output.tensorboard=false")
    )
    fake_run(root, "other", state="finished", lr=3e-4, steps=12)
    shots = tmp_path / "screens"
    shots.mkdir()
    live_config = yaml.safe_dump(
        {
            "model": {"name": str(tiny_model_dir)},
            "data": {"train_file": str(train_file), "max_length": 128},
            "train": {"method": "full", "max_steps": 3000, "log_every": 1, "precision": "fp32"},
            "eval": {"every_steps": 100000},
            "output": {"dir": str(root), "tensorboard": False, "save_every": 100000},
        },
        sort_keys=False,
    )

    with serve_in_thread(create_app(root, cwd=tmp_path)) as api, sync_playwright() as pw:
        base = api.removesuffix("/v1")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: print("browser console:", m.text))
        page.on("response", lambda r: print("HTTP 404:", r.url) if r.status == 404 else None)
        expect.set_options(timeout=30_000)

        print(f"{time.monotonic() - t0:.0f} s: 1. the run")
        # 1. the runs page lists the test run as finished
        page.goto(base + "/#/runs")
        row = page.locator('tr[data-run="t"]')
        expect(row).to_contain_text("finished")
        expect(page.locator('tr[data-run="other"]')).to_be_visible()
        page.screenshot(path=shots / "1-runs.png", full_page=True)

        print(f"{time.monotonic() - t0:.0f} s: 2. open it")
        # 2. open it: the loss chart has a drawn curve
        row.locator("a").click()
        expect(page.locator("#point-count")).to_contain_text("last step 12")
        loss_canvas = '#run-charts .chart[data-title="loss"] canvas'
        expect(page.locator(loss_canvas)).to_be_visible()
        assert _inked_pixels(page, loss_canvas) > 200
        page.screenshot(path=shots / "2-run.png", full_page=True)

        print(f"{time.monotonic() - t0:.0f} s: 3. start")
        # 3. start a training run from the editor; its curve grows live; stop it
        page.goto(base + "/#/launch")
        expect(page.locator("#problems")).to_contain_text("valid")
        page.fill("#config-editor", "train:\n  learnin_rate: 1\n")
        expect(page.locator("#problems")).to_contain_text("did you mean 'train.learning_rate'")
        expect(page.locator(".gutter .err")).to_have_text("2")
        page.screenshot(path=shots / "3-launch-invalid.png", full_page=True)
        page.fill("#config-editor", live_config)
        page.fill("#job-name", "live")
        expect(page.locator("#problems")).to_contain_text("config is valid")
        page.click("#start-job")
        page.wait_for_url("**/#/run/live", timeout=30_000)
        counter = page.locator("#point-count")

        def records() -> int:
            return int((counter.text_content() or "0").split()[0])

        def wait_for_records(n: int, seconds: float) -> None:
            # the machine may be busy: a tiny model's step can take seconds; wait for the steps, not a clock
            deadline = time.monotonic() + seconds
            while records() < n:
                assert time.monotonic() < deadline, f"{records()} live records, wanted {n}"
                time.sleep(0.3)

        wait_for_records(2, 300)
        first = records()
        wait_for_records(first + 2, 120)  # the curve grows while we watch
        assert _inked_pixels(page, loss_canvas) > 100
        page.screenshot(path=shots / "4-live-run.png", full_page=True)
        page.click("#stop-btn")
        expect(page.locator("#run-state")).to_contain_text("stopped", timeout=60_000)
        page.screenshot(path=shots / "5-stopped.png", full_page=True)

        print(f"{time.monotonic() - t0:.0f} s: 4. chat")
        # 4. chat with the trained run: the reply arrives in pieces
        page.goto(base + f"/#/chat?model={root / 't'}")
        page.fill("#max_new_tokens", "24")
        page.fill("#temperature", "0")
        page.evaluate(
            # records, not callbacks: a busy browser delivers several pieces' changes in one callback
            """() => { window.updates = 0; new MutationObserver(r => window.updates += r.length).observe(
            document.querySelector('#msgs-0'), {subtree: true, childList: true, characterData: true}); }"""
        )
        page.fill("#chat-input", "how do I reset it")
        page.press("#chat-input", "Enter")
        expect(page.locator("#msgs-0 .stats")).to_contain_text("tok/s", timeout=60_000)
        reply = page.locator("#msgs-0 .msg.assistant").text_content() or ""
        assert reply.strip(), "empty reply"
        assert page.evaluate("window.updates") >= 4, reply  # user message, reply box, then several pieces
        page.screenshot(path=shots / "6-chat.png", full_page=True)

        print(f"{time.monotonic() - t0:.0f} s: 5. compare")
        # 5. compare two runs: curves overlaid and the differing config keys
        page.goto(base + "/#/runs")
        page.locator('tr[data-run="t"] input[type=checkbox]').check()
        page.locator('tr[data-run="other"] input[type=checkbox]').check()
        page.click("#compare-btn")
        expect(page.locator("#config-diff")).to_contain_text("train.learning_rate")
        compare_canvas = '#compare-charts .chart[data-title="train loss"] canvas'
        expect(page.locator(compare_canvas)).to_be_visible()
        assert _inked_pixels(page, compare_canvas) > 200
        page.screenshot(path=shots / "7-compare.png", full_page=True)
        browser.close()

    print(f"screenshots: {shots}")
    assert len(list(shots.glob("*.png"))) == 7
    shutil.rmtree(root / "live" / "checkpoints", ignore_errors=True)
