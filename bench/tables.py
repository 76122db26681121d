"""How the GPU benchmark scripts end: their rows as JSON, and as a Markdown table for RESULTS.md."""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, Sequence


def save_json(path: str, data: Any) -> None:
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def print_table(columns: Sequence[str], rows: List[Dict[str, Any]], cells: Callable[[Dict[str, Any]], List[str]],
                label_keys: Sequence[str]) -> None:
    """One line per row: `cells(row)`, or for a row holding an "error", its label_keys' values and the error."""
    print("\n| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        if "error" in row:
            error = " ".join(str(row["error"]).split())[-200:]   # one line: the end of it says most
            parts = [str(row.get(key, "")) for key in label_keys] + [f"error: {error}"]
            parts += [""] * (len(columns) - len(parts))
        else:
            parts = cells(row)
        print("| " + " | ".join(parts) + " |")
