"""`fomm-doctor install`: the right torch for a machine, through a bad network.

One direction, one module per step:
    target     facts about the machine the wheel is for (interpreter tags, OS, GPUs), probed or given
    builds     what no index says (torch_builds.json): Python support, driver minimums, GPU architectures
    index      reading package indexes (PEP 691 JSON, PEP 503 HTML, flat listings, folders)
    sources    which indexes to read: pip's config, mirrors, the PyTorch index (or a mirror of it)
    metadata   what a wheel is, from its Requires-Dist (PEP 658 file or the wheel's own METADATA)
    choose     pure: the best file among those that exist, and the sentence when none fits
    plan       gather facts, read the sources concurrently, choose, assemble the plan
    execute    download (verified), pip install, check in a fresh interpreter
    pip_config / pip_persist   reading and writing pip's own configuration
"""
