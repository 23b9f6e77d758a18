"""The web page (`fomm-doctor ui`): `actions` does the work through the CLI's own functions, knowing
nothing of gradio; `page` lays out the inputs and wires them to the actions."""
