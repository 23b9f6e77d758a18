"""`fomm-doctor batch` jobs/s on this machine: 1 worker with every core, against N single-thread workers, against
N Ray actors of one thread, side by side in one run, as ratios to the first.

    python benchmarks/batch_scaling.py [--jobs 8] [--frames 24] [--model vox-256|synth-64] [--workers 2]

The model is the vox-256 architecture with the bench's stress weights (benchmarks/animate_end_to_end.py), or the
bundled 64-px model, where per-job costs (probing, ffmpeg start, the audio pass) weigh more. Jobs: the shipped
portrait and a grey copy of it driven by real face clips with audio. Each configuration runs the same jobs into
its own folder with the exact fp32 path; the files must come out byte-identical across all three (printed).
jobs/s (all) is the command's own figure, start-up included (processes, torch, the model, Ray's instance);
jobs/s (steady) counts from the first job's end to the last's (manifest timestamps), which is what a long batch
sees.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_jobs(folder: Path, jobs: int, frames: int, size: int) -> Path:
    from PIL import Image
    from animate_end_to_end import face_clip
    portrait = ROOT / "tests" / "data" / "faces" / "astronaut_portrait.jpg"
    photos = [folder / "portrait.jpg", folder / "grey.jpg"]
    photos[0].write_bytes(portrait.read_bytes())
    Image.open(portrait).convert("L").save(photos[1])
    clips = [face_clip(folder / f"clip{i}.mp4", frames + i, size) for i in range((jobs + 1) // 2)]
    rows = ["source,driving,output"] + [f"{photos[i % 2].name},{clips[i // 2].name},job{i:03d}.mp4"
                                        for i in range(jobs)]
    (folder / "jobs.csv").write_text("\n".join(rows) + "\n")
    return folder / "jobs.csv"


def run(jobs_file: Path, out: Path, checkpoint: str, extra: list) -> dict:
    cmd = [sys.executable, "-m", "fomm_doctor", "batch", str(jobs_file), "-o", str(out), "--checkpoint", checkpoint,
           "--json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"batch {' '.join(extra)} failed: {proc.stderr.strip().splitlines()[-3:]}")
    summary = json.loads(proc.stdout)
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    ends = sorted(datetime.fromisoformat(r["finished"]).timestamp() for r in records)
    summary["steady"] = (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else 0.0
    summary["files"] = {r["job"]: r["sha256"] for r in records}
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--model", choices=("vox-256", "synth-64"), default="vox-256")
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 4))
    args = parser.parse_args(argv)
    cores, n = os.cpu_count() or 1, args.workers
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model == "vox-256":
            from animate_end_to_end import stress_checkpoint
            checkpoint, size = str(stress_checkpoint(tmp)), 256
        else:
            checkpoint, size = "synth-64", 64
        jobs_file = make_jobs(tmp, args.jobs, args.frames, size)
        configs = [(f"1 worker x {cores} threads", ["--workers", "1", "--threads", str(cores)]),
                   (f"{n} workers x 1 thread", ["--workers", str(n), "--threads", "1"])]
        if importlib.util.find_spec("ray") is not None:
            configs.append((f"Ray, {n} actors x 1 thread", ["--ray", "local", "--workers", str(n), "--threads", "1"]))
        else:
            print("Ray is not installed (pip install \"fomm-doctor[ray]\"): its row is left out")
        results = [(name, run(jobs_file, tmp / f"out{i}", checkpoint, extra)) for i, (name, extra) in
                   enumerate(configs)]
    print_table(results, args, cores)


def print_table(results, args, cores) -> None:
    base = results[0][1]
    print(f"{args.jobs} jobs of {args.frames}+ frames, {args.model}, fp32 exact, {cores} cores")
    print(f"{'configuration':28} {'jobs/s (all)':>12} {'ratio':>6} {'jobs/s (steady)':>15} {'ratio':>6}")
    for name, s in results:
        all_ratio = s["jobs_per_second"] / base["jobs_per_second"] if base["jobs_per_second"] else 0.0
        steady_ratio = s["steady"] / base["steady"] if base["steady"] else 0.0
        print(f"{name:28} {s['jobs_per_second']:12.3f} {all_ratio:5.2f}x {s['steady']:15.3f} {steady_ratio:5.2f}x")
    single = [s for name, s in results if "x 1 thread" in name]
    same = all(s["files"] == single[0]["files"] for s in single)
    print(f"byte-identical videos from every 1-thread configuration: {'yes' if same else 'NO'}")
    differ = sum(base["files"][k] != single[0]["files"][k] for k in base["files"])
    print(f"{differ} of {len(base['files'])} videos differ between {cores} threads and 1 (the thread count changes "
          "float sums: why batch uses one count for all workers)")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
