"""POST paths that create server-side state, across the major providers' APIs.

Most POSTs an LLM client sends are inference calls: a failed one created nothing, so resending
it is safe. A POST to one of these paths creates something that outlives the request (a
session, a thread, a run, an uploaded file, a batch, a fine-tuning job, a vector store, a cache
entry, ...): resending it after an ambiguous failure may create a second one. Such a POST is
re-sent only where the first request provably did nothing (a connect-phase error, a 429, an
overload that names its wait) or when it carries an ``Idempotency-Key``.

A pattern is matched against the end of the request's path, segment by segment, so that any
prefix (``/v1``, ``/openai/v1``, ``/openai/deployments/<name>``, a gateway's base path) is
allowed. In a segment, ``*`` matches any characters but ``/``.
"""

from __future__ import annotations

import functools
import re

__all__ = ["STATEFUL_PATHS", "is_stateful"]

STATEFUL_PATHS: tuple[str, ...] = (
    # OpenAI (and Azure OpenAI, Groq, Together, Fireworks, xAI, Mistral where they mirror it)
    "assistants",
    "threads",
    "threads/runs",
    "threads/*/messages",
    "threads/*/runs",
    "threads/*/runs/*/submit_tool_outputs",
    "files",
    "uploads",
    "uploads/*/parts",
    "uploads/*/complete",
    "batches",
    "batch/jobs",
    "fine_tuning/jobs",
    "fine_tuning/checkpoints/*/permissions",
    "fine-tunes",
    "vector_stores",
    "vector_stores/*/files",
    "vector_stores/*/file_batches",
    "agents",
    "agents/sessions",
    "agents/sessions/*/events",
    "conversations",
    "conversations/*/items",
    "containers",
    "containers/*/files",
    "evals",
    "evals/*/runs",
    "realtime/sessions",
    "realtime/transcription_sessions",
    "realtime/client_secrets",
    "chatkit/sessions",
    "videos",
    "skills",
    "skills/*/versions",
    "organization/invites",
    "organization/projects",
    "organization/projects/*/service_accounts",
    "organization/admin_api_keys",
    # Anthropic: message batches, files, skills
    "messages/batches",
    # Gemini API and Vertex AI: uploads, caches, tuned models, batches, retrieval stores
    "cachedContents",
    "tunedModels",
    "tuningJobs",
    "batchPredictionJobs",
    "corpora",
    "corpora/*/documents",
    "ragCorpora",
    "fileSearchStores",
    "*:batchGenerateContent",
    "*:asyncBatchEmbedContent",
    "*:uploadToFileSearchStore",
    # Cohere, Mistral and others: datasets, jobs, libraries
    "datasets",
    "embed-jobs",
    "finetuning/finetuned-models",
    "libraries",
    "libraries/*/documents",
)
"""The built-in list; ``RetryPolicy(stateful_paths=...)`` adds to it."""


def _segment(part: str) -> str:
    return "[^/]*".join(re.escape(piece) for piece in part.split("*"))


@functools.lru_cache(maxsize=16)
def _matcher(extra: tuple[str, ...]) -> re.Pattern[str]:
    patterns = [
        "/".join(_segment(part) for part in pattern.strip("/").split("/"))
        for pattern in (*STATEFUL_PATHS, *extra)
    ]
    return re.compile(r"(?:^|/)(?:" + "|".join(patterns) + r")/?\Z")


def is_stateful(path: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a POST to ``path`` creates server-side state (built-in list plus ``extra``)."""
    return _matcher(extra).search(path) is not None
