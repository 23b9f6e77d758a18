"""The web page (`fomm-doctor ui`): `actions` does the work through the CLI's own functions, knowing
nothing of gradio; `page` lays out the inputs and wires them to the actions; `session` is the one folder it
serves (made by it, pruned by count); `guard` decides which requests it answers (Host, upload size, USER:PASS)."""
