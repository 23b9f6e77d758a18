"""OpenCV check: cv2 imports in a child Python (time-limited), its version, a tiny image op, and whether two
OpenCV distributions are installed at once (opencv-python beside -headless: a classic source of breakage).

id: opencv.import
"""
from fomm_doctor.preflight import tr
from fomm_doctor.report import CheckResult
from fomm_doctor.checks.common import pip_cmd
from fomm_doctor.checks.subprocess_probe import import_script, judge_failed_import, probe_import

IMPORT_TIMEOUT = 30.0

_DISTRIBUTIONS = r'''
from importlib import metadata
names = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
found = []
for n in names:
    try:
        found.append("%s==%s" % (n, metadata.version(n)))
    except Exception:
        pass
out["distributions"] = found
'''

_IMAGE_OP = r'''
import numpy as np
out["version"] = cv2.__version__
img = np.zeros((8, 8, 3), np.uint8)
ok, buf = cv2.imencode(".png", cv2.resize(img, (4, 4)))
out["image_op"] = bool(ok) and cv2.imdecode(buf, cv2.IMREAD_COLOR).shape == (4, 4, 3)
out["ok"] = out["image_op"]
if not out["ok"]:
    out["error"] = "a tiny image operation failed"
'''

_SCRIPT = import_script("cv2", _IMAGE_OP, before=_DISTRIBUTIONS)


def probe_opencv(timeout: float = IMPORT_TIMEOUT, python=None, env=None) -> dict:
    return probe_import(_SCRIPT, timeout, python, env)


def _uninstall_all(platform: str, dists: list) -> str:
    """Remove every OpenCV distribution first: two of them share the one cv2 folder."""
    return pip_cmd(platform, "uninstall -y " + " ".join(d.split("==")[0] for d in dists)) + " && "


def _uninstall_all_run(dists: list) -> tuple:
    """_uninstall_all as CheckResult.run."""
    return (("pip", "uninstall", "-y", *(d.split("==")[0] for d in dists)),)


_INSTALL_RUN = (("pip", "install", "opencv-python"),)
_REINSTALL_RUN = (("pip", "install", "--force-reinstall", "opencv-python"),)


def judge_import(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    platform = platform_facts.get("platform", "linux")
    dists = facts.get("distributions") or []
    details = {k: facts.get(k) for k in ("installed", "version", "distributions", "image_op", "error", "elapsed_s")}
    reinstall = pip_cmd(platform, "install --force-reinstall opencv-python")
    failed = judge_failed_import(
        "opencv.import", facts, details, lang, missing="OpenCV (cv2)", name="cv2",
        missing_fix=pip_cmd(platform, "install opencv-python"),
        broken_fix=lambda error: (_uninstall_all(platform, dists) if len(dists) > 1 else "") + reinstall,
        missing_run=_INSTALL_RUN,
        broken_run=lambda error: (_uninstall_all_run(dists) if len(dists) > 1 else ()) + _REINSTALL_RUN)
    if failed:
        return failed
    if len(dists) > 1:
        return CheckResult("opencv.import", "warn", tr(
            lang, f"cv2 {facts.get('version')} works, but {len(dists)} OpenCV packages share one folder: "
                  f"{', '.join(dists)}.",
            f"cv2 {facts.get('version')} 可用，但装了 {len(dists)} 个 OpenCV 包：{', '.join(dists)}。"), details,
            _uninstall_all(platform, dists) + pip_cmd(platform, "install opencv-python"),
            _uninstall_all_run(dists) + _INSTALL_RUN)
    return CheckResult("opencv.import", "ok", tr(lang, f"cv2 {facts.get('version')}; image op works.",
                                                 f"cv2 {facts.get('version')}；图像运算正常。"), details)
