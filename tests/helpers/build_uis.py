"""Build every pack extension's ui() inside gr.Blocks with whatever gradio this Python has.

Run by tests/test_gradio_compat.py under the gradio 4.37 environment `make setup` creates;
prints one line per failure and `built N blocks` at the end.
"""

import sys
import tempfile

import gradio as gr

from pocketpack.host.runtime import Runtime

EXTENSIONS = ["memory", "rag-enhancer", "adapter-switcher", "vram-advisor"]

runtime = Runtime(root=sys.argv[1], user_data_dir=tempfile.mkdtemp(), extensions=EXTENSIONS)
print("gradio", gr.__version__)
with gr.Blocks() as demo:
    for display_name, module in runtime.host.tab_extensions():
        name = next(n for m, n in runtime.host.iterator() if m is module)
        with gr.Tab(display_name):
            runtime.host.build_ui(name, module)
    for name, module in runtime.host.block_extensions():
        runtime.host.build_ui(name, module)
for failure in runtime.host.take_failures():
    print("FAILED", failure.notice())
print("loaded", " ".join(runtime.host.loaded))
print("built", len(demo.blocks), "blocks")
