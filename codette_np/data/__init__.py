"""The built-in "mixed training" dataset, user data loading and the split.

Five categories (default mix 30/25/25/20/0):
- perspectives: a question answered in the style of one named perspective
  (Newton, Da Vinci, Quantum, Philosophical, Systems, Empathic);
- tools: request -> assistant turn that is exactly a tool call -> tool turn
  with the true result (codette_np.data.tools runs the call offline) -> answer;
- consciousness: honest, consistent answers about what Codette is;
- mixed: one problem seen from two or three perspectives and integrated,
  some after a tool call;
- copying: a random text (words, numbers, a path, a URL, an expression)
  asked back plain or as a JSON string: a tool call's argument copying, in
  isolation (weight 0 unless the mix asks for it).

Every example starts with the system turn (chat.SYSTEM_PROMPT) and is
rendered with chat.render. Generation is procedural (pools x structures x
computed values) and deterministic per seed: each category draws from its
own random.Random(f"{seed}:{category}"), so a category's examples do not
depend on how many examples the other categories get.

An example is a dict: category, text, messages; tool examples (and mixed
examples with a call) also have tool (the expected tool name) and, for the
file tools, files (the workspace as it was before the call).

Layout: one module per category (perspectives, tool_use, consciousness,
mixed, copying) over `common`; `mix` draws them by the category mix; `tools` holds the nine tools
and their offline world; `user` reads user files and splits by example;
`stats` measures diversity; `cli` is the command line:

    python -m codette_np.data --samples 5000 --out data.jsonl --stats
"""

from codette_np.data.common import CATEGORIES, DEFAULT_MIX, DataError
from codette_np.data.mix import generate, parse_mix
from codette_np.data.stats import distinct_ngram_stats, skeleton
from codette_np.data.tool_use import FILE_TOOLS
from codette_np.data.user import load_user_data, run_examples, split_by_example
from codette_np.data.cli import main

__all__ = ["CATEGORIES", "DEFAULT_MIX", "DataError", "generate", "parse_mix", "distinct_ngram_stats",
           "skeleton", "FILE_TOOLS", "load_user_data", "run_examples", "split_by_example", "main"]
