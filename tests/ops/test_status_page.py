"""The status page at `/`, in a real browser (Playwright driving Debian's chromium): it shows health,
queue, workers, breakers, cache and store figures, follows a job from QUEUED or RUNNING to
SUCCEEDED live, links each health reason to its runbook section, and loads nothing from elsewhere."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from ops_helpers import need, submit
from serverproc import ADMIN_TOKEN, ServerProcess

playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
# Eight distinct blueprints on one compile worker: the last waits behind seven, long enough for a
# page polling every 250 ms to show it before it finishes (EMERGENCY jobs take 0.2-0.5 s each).
BATCH = [
    "bottleneck_residual_128", "causal_sdpa_256", "channel_attention_64", "gated_token_mixer_128",
    "lora_adapter_1024", "mhsa_4h_256", "moe_top2_256", "prenorm_transformer_256",
]
# Records every status each job row shows, in order, as the page redraws.
RECORDER = """() => {
  window.seen = {};
  const body = document.querySelector('#jobs tbody');
  const record = () => {
    for (const tr of body.querySelectorAll('tr')) {
      const s = tr.querySelector('.status').textContent;
      const seen = (window.seen[tr.dataset.jobId] = window.seen[tr.dataset.jobId] || []);
      if (seen[seen.length - 1] !== s) seen.push(s);
    }
  };
  new MutationObserver(record).observe(body, {childList: true, subtree: true});
  record();
}"""


@pytest.fixture
def page(forge: ServerProcess) -> Iterator[object]:
    chromium = need("chromium")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_status_page_follows_a_job_from_queued_to_succeeded(forge: ServerProcess, page: object) -> None:
    expect = playwright.expect
    requests: list[str] = []
    errors: list[str] = []
    page.on("request", lambda r: requests.append(r.url))  # type: ignore[attr-defined]
    page.on("pageerror", lambda e: errors.append(str(e)))  # type: ignore[attr-defined]
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)  # type: ignore[attr-defined]

    resp = page.goto(forge.url + "/?every=0.25")  # type: ignore[attr-defined]
    assert resp.status == 200 and "default-src 'none'" in resp.headers["content-security-policy"]
    expect(page.locator("#status")).to_have_text(re.compile("^(HEALTHY|DEGRADED)$"))  # type: ignore[attr-defined]
    expect(page.locator("#breakers tr[data-breaker='store'] td")).to_have_text("CLOSED")  # type: ignore[attr-defined]
    expect(page.locator("#workers")).to_contain_text("alive / busy")  # type: ignore[attr-defined]
    expect(page.locator("#store")).to_contain_text("cache hit rate L1 / L2 / L3")  # type: ignore[attr-defined]
    page.evaluate(RECORDER)  # type: ignore[attr-defined]

    with httpx.Client(base_url=forge.url, timeout=60) as client:
        ids = submit(client, BATCH)
    last = page.locator(f"#jobs tr[data-job-id='{ids[-1]}']")  # type: ignore[attr-defined]
    expect(last.locator(".status")).to_have_text("SUCCEEDED", timeout=120_000)
    seen = page.evaluate("window.seen")  # type: ignore[attr-defined]
    assert seen[ids[-1]][0] in ("QUEUED", "RUNNING") and seen[ids[-1]][-1] == "SUCCEEDED", seen[ids[-1]]
    expect(last.locator(".asked")).to_have_text("EMERGENCY")
    expect(last.locator(".served")).to_have_text("EMERGENCY")
    expect(last.locator("td.num").nth(1)).to_have_text(re.compile(r"^\d+(\.\d+)? (ms|s)$"))  # compiled in
    # The store figures follow: every finished job stored an artifact.
    expect(page.locator("#store")).to_contain_text(re.compile(r"artifacts\s*\d+ \("))  # type: ignore[attr-defined]

    # A health reason appears with its runbook link, and the link lands on its section.
    with httpx.Client(base_url=forge.url, timeout=30) as client:
        answer = client.post("/v1/admin/conservative-mode", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             json={"active": True, "reason": "memory_pressure"})
        assert answer.status_code == 200, answer.text
    expect(page.locator("#status")).to_have_text("DEGRADED")  # type: ignore[attr-defined]
    reason = page.locator("#reasons li[data-code='conservative-mode']")  # type: ignore[attr-defined]
    expect(reason).to_contain_text("conservative mode is on")
    reason.locator("a").click()
    page.wait_for_url(re.compile(r"/runbook#conservative-mode$"))  # type: ignore[attr-defined]
    expect(page.locator("h2#conservative-mode")).to_be_visible()  # type: ignore[attr-defined]

    assert all(url.startswith(forge.url + "/") for url in requests), [u for u in requests if not u.startswith(forge.url)]
    assert not errors, errors
