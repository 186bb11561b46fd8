"""The report page in a real headless browser: every figure decodes and has a size.

The page has no script of its own; the test loads a copy with a probe appended that, on the
load event, writes each <img>'s (complete, naturalWidth, naturalHeight) into the body, and reads
the DOM back with ``--dump-dom``. Skipped where no chromium is installed (Debian: ``apt-get
install chromium``)."""

import re
import shutil
import subprocess

import pytest
from report_fixtures import ps_run, psdfs_run

from evomerge.report import report

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH")

PROBE = (
    "<script>window.addEventListener('load',function(){document.body.setAttribute('data-probe',"
    "[].map.call(document.images,function(i){return i.complete+':'+i.naturalWidth+'x'+i.naturalHeight})"
    ".join(' ')||'none')})</script>"
)


def loaded_images(html_path, tmp_path):
    """[(complete, width, height)] of every <img> after the page's load event in chromium."""
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    out = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'data-probe="([^"]*)"', out)
    assert found, f"the probe did not run; chromium printed {out[:300]!r}"
    if found.group(1) == "none":
        return []
    return [(c == "true", int(w), int(h)) for c, w, h in re.findall(r"(\w+):(\d+)x(\d+)", found.group(1))]


@pytest.mark.parametrize("build", [ps_run, psdfs_run], ids=["ps-3-objectives", "sequential-psdfs"])
def test_every_figure_loads_in_chromium(tmp_path, build):
    index = report(build(tmp_path / "run"))
    images = loaded_images(index, tmp_path)
    expected = len(re.findall(r"<img ", index.read_text()))
    assert expected >= 3 and len(images) == expected
    for complete, w, h in images:
        assert complete and w >= 300 and h >= 150


def test_the_probe_sees_a_broken_figure(tmp_path):
    """The check can fail: an image whose data does not decode has no natural size."""
    index = report(ps_run(tmp_path / "run"))
    broken = tmp_path / "broken.html"
    text = index.read_text()
    broken.write_text(text.replace("base64,iVBORw0KGgo", "base64,AAAAiVBORw0KGgo", 1))
    images = loaded_images(broken, tmp_path)
    assert [w for _, w, _ in images].count(0) == 1
