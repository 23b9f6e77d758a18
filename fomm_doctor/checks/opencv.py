"""OpenCV check: cv2 imports in a child Python (time-limited), its version, a tiny image op, and whether two
OpenCV distributions are installed at once (opencv-python beside -headless: a classic source of breakage).

id: opencv.import
"""
from fomm_doctor.i18n import tr
from fomm_doctor.render import CheckResult
from fomm_doctor.checks.common import pip_cmd
from fomm_doctor.checks.subprocess_probe import MARK, import_facts, run_probe_script

IMPORT_TIMEOUT = 30.0

_SCRIPT = r'''
import json
out = {"installed": True}
try:
    from importlib import metadata
    names = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
    found = []
    for n in names:
        try:
            found.append("%s==%s" % (n, metadata.version(n)))
        except Exception:
            pass
    out["distributions"] = found
    import cv2
except ModuleNotFoundError as e:
    if e.name == "cv2":
        out.update(installed=False, ok=False, error=str(e))
    else:
        out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
except BaseException as e:
    out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
else:
    try:
        import numpy as np
        out["version"] = cv2.__version__
        img = np.zeros((8, 8, 3), np.uint8)
        ok, buf = cv2.imencode(".png", cv2.resize(img, (4, 4)))
        out["image_op"] = bool(ok) and cv2.imdecode(buf, cv2.IMREAD_COLOR).shape == (4, 4, 3)
        out["ok"] = out["image_op"]
        if not out["ok"]:
            out["error"] = "a tiny image operation failed"
    except BaseException as e:
        out.update(ok=False, error="%s: %s" % (type(e).__name__, e))
print(MARK + json.dumps(out))
'''.replace("MARK", repr(MARK))


def probe_opencv(timeout: float = IMPORT_TIMEOUT, python=None, env=None) -> dict:
    return import_facts(run_probe_script(_SCRIPT, timeout, python, env), timeout)


def judge_import(facts: dict, platform_facts: dict, lang: str = "en") -> CheckResult:
    platform = platform_facts.get("platform", "linux")
    dists = facts.get("distributions") or []
    details = {k: facts.get(k) for k in ("installed", "version", "distributions", "image_op", "error", "elapsed_s")}
    if facts.get("installed") is False:
        return CheckResult("opencv.import", "fail", tr(lang, "OpenCV (cv2) is not installed.", "未安装 OpenCV (cv2)。"),
                           details, pip_cmd(platform, "install opencv-python"))
    if not facts.get("ok"):
        error = (facts.get("error") or "?").strip().splitlines()[-1]
        fix = pip_cmd(platform, "install --force-reinstall opencv-python")
        if len(dists) > 1:
            fix = pip_cmd(platform, "uninstall -y " + " ".join(d.split("==")[0] for d in dists)) + " && " + fix
        return CheckResult("opencv.import", "fail", tr(lang, f"cv2 is broken: {error}", f"cv2 无法使用：{error}"),
                           details, fix)
    if len(dists) > 1:
        return CheckResult("opencv.import", "warn", tr(
            lang, f"cv2 {facts.get('version')} works, but {len(dists)} OpenCV packages share one folder: "
                  f"{', '.join(dists)}.",
            f"cv2 {facts.get('version')} 可用，但装了 {len(dists)} 个 OpenCV 包：{', '.join(dists)}。"), details,
            pip_cmd(platform, "uninstall -y " + " ".join(d.split("==")[0] for d in dists)) + " && "
            + pip_cmd(platform, "install opencv-python"))
    return CheckResult("opencv.import", "ok", tr(lang, f"cv2 {facts.get('version')}; image op works.",
                                                 f"cv2 {facts.get('version')}；图像运算正常。"), details)
