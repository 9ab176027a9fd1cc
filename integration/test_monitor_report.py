"""The monitor's report rendered by a real browser: headless Chromium screenshots the HTML the
gateway serves for a monitored job; the PNG has the window's size, is not blank, and shows the
plotted series in their colours (the training loss and the alignment probe gap)."""

import shutil
import subprocess

import httpx2 as httpx

from conftest import KEYS
from datasets import upload
from monitor_helpers import config, create, finished, misaligned_jsonl, policy
from pngcheck import ink, rows, size

WIDTH, HEIGHT = 1280, 2200
LOSS = bytes([0x44, 0x44, 0x44])          # the report's loss series colour
ALIGNMENT_GAP = bytes([0x7B, 0x3F, 0xB5])  # the report's alignment probe gap colour


def colour_pixels(png: bytes, rgb: bytes) -> int:
    w, h, bpp, lines = rows(png)
    return sum(1 for line in lines for x in range(0, w * bpp, bpp) if line[x:x + 3] == rgb)


def test_the_report_renders_in_headless_chromium(gateway_factory, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium missing: run scripts/setup-test-deps.sh"
    gw = gateway_factory(extra=config(), policies={"default.toml": policy(epochs=4)})
    c = gw.client()
    job = create(c, upload(c, misaligned_jsonl()))
    assert finished(c, job.id).status == "succeeded"
    r = httpx.get(f"{gw.base_url}/tuneguard/jobs/{job.id}/report",
                  headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert r.status_code == 200, r.text
    page = tmp_path / "report.html"
    page.write_text(r.text)
    shot = tmp_path / "report.png"
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={WIDTH},{HEIGHT}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    png = shot.read_bytes()
    assert size(png) == (WIDTH, HEIGHT)
    share, colours = ink(png)
    assert share > 0.05 and colours > 50, f"blank screenshot? ink {share:.3f}, {colours} colours"
    assert colour_pixels(png, LOSS) > 200, "the loss series is drawn"
    assert colour_pixels(png, ALIGNMENT_GAP) > 200, "the alignment probe gap series is drawn"
