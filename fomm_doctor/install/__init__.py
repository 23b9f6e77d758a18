"""`fomm-doctor install`: the right torch for a machine, through a bad network.

One direction, one module per step:
    backend    a torch build (cpu, cuNNN, rocmX.Y, xpu) as one value, parsed once from a label
    machine    the facts a choice depends on: the target interpreter, its GPUs, the torch it has
    options    what an install is asked to do, and the probes the caller hands in (install never imports check)
    target     the target's facts, probed (its interpreter) or given (--platform, --driver, --gpu-arch)
    builds     what no index says (torch_builds.json): Python support, driver minimums, GPU architectures
    index      reading package indexes (PEP 691 JSON, PEP 503 HTML, flat listings, folders)
    sources    which indexes to read: pip's config, mirrors, the PyTorch index (or a mirror of it)
    metadata   what a wheel is, from its Requires-Dist (PEP 658 file or the wheel's own METADATA)
    choose     pure: the best file among those that exist, and the sentence when none fits
    hashes     where the chosen wheel comes from, and which sha256 vouches for it
    plan       gather facts, read the sources concurrently, choose, assemble the Plan
    fetchall   every file of the install at once: each requirement's wheel found on the index, fetched, verified
    execute    download (verified), pip install, check in a fresh interpreter: the Outcome
    bundle     --download-only DIR for another machine, and --from DIR there
    pip_config / pip_persist   reading and writing pip's own configuration
"""
