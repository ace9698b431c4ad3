"""rag-enhancer's library: ask questions of your own documents, with citations.

- ``parsers``: bytes of txt/md/html/pdf/docx/epub/csv/code to structured blocks (one maintained
  parser per format); ``fetch``: URLs with a timeout and a size limit.
- ``chunking``: structure-following chunks (headings, paragraphs, sentences) with overlap.
- ``ingest``: the ``Library`` — incremental ingestion into the shared retrieval store
  (``pocketpack.retrieval``), uploads, listing, removal, re-indexing.
- ``retrieve``: hybrid search, optional cross-encoder reranking, threshold, neighbour expansion.
- ``inject`` / ``cite``: labelled ``[n]`` passages through ``pocketpack.compose``; citations in
  the visible reply.
- ``extension``: what each TGWUI hook does (``extensions/rag-enhancer/script.py`` is the adapter).
- ``cli``: ``pocketpack rag ...``.
"""
