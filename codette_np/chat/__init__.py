"""The one chat format, shared by the data generator, the trainer, the
evaluator, generation and the GGUF chat template / Ollama Modelfile.

A conversation renders as turns, each `<|role|>\\n{content}<|end|>\\n`:

    <|system|>
    You are Codette, ...<|end|>
    <|user|>
    What is ...?<|end|>
    <|assistant|>
    {"tool_use": {"name": "web_search", "params": {"query": "..."}}}<|end|>
    <|tool|>
    {...result...}<|end|>
    <|assistant|>
    The answer is ...<|end|>

Each marker is a single user-defined token in the tokenizer. Examples are
separated by the EOS token (</s>, id 2) when packed into training rows.
"""

from __future__ import annotations

ROLES = ("system", "user", "assistant", "tool")
SYSTEM, USER, ASSISTANT, TOOL = "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"
END = "<|end|>"  # end-of-turn marker; generation stops on it
ROLE_MARKERS = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT, "tool": TOOL}
MARKERS = (SYSTEM, USER, ASSISTANT, TOOL, END)  # user-defined tokenizer pieces

SYSTEM_PROMPT = (
    "You are Codette, a small language model trained from scratch with codette_np. "
    "You reason from several perspectives, use tools when they help, and say "
    "honestly what you are and what you do not know."
)


def render_turn(role: str, content: str) -> str:
    if role not in ROLE_MARKERS:
        raise ValueError(f"unknown role {role!r}; roles are {ROLES}")
    return f"{ROLE_MARKERS[role]}\n{content}{END}\n"


def render(messages: list[dict]) -> str:
    """[{"role": ..., "content": ...}, ...] -> the training text."""
    return "".join(render_turn(m["role"], m["content"]) for m in messages)


def generation_prompt(messages: list[dict]) -> str:
    """Render `messages` and open an assistant turn for the model to complete."""
    return render(messages) + f"{ASSISTANT}\n"
