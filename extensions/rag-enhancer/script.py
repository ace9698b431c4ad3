"""rag-enhancer: thin TGWUI adapter over pocketpack (work in progress)."""

params = {
    "display_name": "rag-enhancer",
    "is_tab": True,
}


def setup():
    import pocketpack  # noqa: F401  (fails early with a clear ModuleNotFoundError if not installed)


def ui():
    import gradio as gr

    gr.Markdown("rag-enhancer")
