"""Benchmark: the original FOMM or TPSMM code against our engine's paths, on identical random weights and inputs.

    python -m fomm_core.bench [--model fomm|tpsmm] [--config vox-256] [--size 256] [--frames 4] [--runs 3]
                              [--threads N] [--smoke] [--paths reference,exact,fast] [--json]

Each path runs in its own subprocess (so peak RSS is that path's own) on the same seeded weights and frames;
the timed runs are interleaved across paths (round by round), so that load from other programs on a shared
machine hits every path alike. Outputs come back to the parent, which compares every path with the reference:
max abs difference and PSNR.
The reference is deep-animator's copy of the original code with grid_sample forced to align_corners=True
(torch 1.0's behaviour, which the checkpoints were trained with), animated as the original demo does: one frame
at a time, the source re-encoded for every frame. For TPSMM (a tpsmm-* config, or --model tpsmm) the reference is
the original repository's code (fomm_core.bench.reference: $FOMM_TPSMM_REFERENCE or shared/reference/tpsmm beside
the checkout) run by its demo's own make_animation, relative mode; TPSMM has no int8 path.

    weights     seeded random weights for both families, the shared inputs, the frame-size unit of a config
    reference   the original code of both families, and how it animates
    runners     one path, measured in this process (our engines, or the reference)
    worker      a path's own process, and the parent's handle on it
    report      the whole benchmark: options, workers, the rows, the 80-column table
"""
