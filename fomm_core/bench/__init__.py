"""Benchmark: the original FOMM, TPSMM or LivePortrait code against our engine's paths, same weights and inputs.

    python -m fomm_core.bench [--model fomm|tpsmm|liveportrait] [--config vox-256] [--size 256] [--frames 4]
                              [--runs 3] [--threads N] [--smoke] [--paths reference,exact,fast] [--json]
    python -m fomm_core.bench --model liveportrait --memory     # peak memory streaming 4, then 16 frames

Each path runs in its own subprocess (so peak RSS is that path's own) on the same seeded weights and frames;
the timed runs are interleaved across paths (round by round), so that load from other programs on a shared
machine hits every path alike. Outputs come back to the parent, which compares every path with the reference:
max abs difference and PSNR.
The reference is deep-animator's copy of the original code with grid_sample forced to align_corners=True
(torch 1.0's behaviour, which the checkpoints were trained with), animated as the original demo does: one frame
at a time, the source re-encoded for every frame. For TPSMM (a tpsmm-* config, or --model tpsmm) the reference is
the original repository's code (fomm_core.bench.reference: $FOMM_TPSMM_REFERENCE or shared/reference/tpsmm beside
the checkout) run by its demo's own make_animation, relative mode.
For LivePortrait (--model liveportrait; its networks take 256 px and make 512) the reference is the original
repository's networks and its pipeline's steps for relative motion with stitching
(fomm_core.bench.liveportrait_reference: $FOMM_LIVEPORTRAIT_REFERENCE or shared/reference/liveportrait); its stress
weights are those networks seeded, saved once as a folder of the five published files, which every path loads
strictly. Its paths: reference, exact, bf16, fast.

    weights     seeded random weights of each family, the shared inputs, the frame-size unit of a config
    folders     where a family's original code is looked for
    reference   the original code of each family, and how it animates
    liveportrait_reference   the original LivePortrait code: imported, seeded, its pipeline's steps restated
    stages      which stages each family's rows time, and the timers
    runners     one path, measured in this process (our engines, or the reference)
    worker      a path's own process, and the parent's handle on it
    report      the whole benchmark: options, workers, the rows, the 80-column table
    memory      peak resident memory against clip length, our engine streaming in a child process
"""
