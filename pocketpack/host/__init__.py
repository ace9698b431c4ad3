"""A host that runs text-generation-webui extensions exactly as TGWUI does.

- :class:`~pocketpack.host.extensions.ExtensionHost`: discovery, params, setup, hook dispatch.
- :func:`~pocketpack.host.chat.chat_turn` / :func:`~pocketpack.host.chat.complete`: a chat
  turn and a plain completion with every hook where TGWUI calls it.
- :class:`~pocketpack.host.runtime.Runtime`: extensions + one loaded model + ``shared``.
- ``pocketpack serve``: the standalone web UI (:mod:`pocketpack.host.webui`).
"""

from pocketpack.host.chat import api_chat_state, chat_turn, complete, completion_state, default_state
from pocketpack.host.extensions import ExtensionHost, UnknownExtensionError

__all__ = ["ExtensionHost", "UnknownExtensionError", "api_chat_state", "chat_turn", "complete",
           "completion_state", "default_state"]
