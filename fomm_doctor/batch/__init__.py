"""`fomm-doctor batch`: many animations, resumable, on this machine's cores or a Ray cluster.

    jobs.py      what to animate: a CSV / JSON-lines file, or two folders (pure reading, checked whole)
    manifest.py  the output folder's record of each finished job, and what counts as done
    worker.py    one worker: runs jobs with its models kept loaded (the same code locally and on Ray)
    local.py     worker processes on this machine
    on_ray.py    Ray actors on a cluster (the optional extra fomm-doctor[ray])
    run.py       a batch from start to end: hold the folder, plan, run, record
"""
