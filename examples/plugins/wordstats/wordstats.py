"""Example subprocess tool: params as JSON on stdin, tool name as last argument, JSON result on stdout."""

import collections
import json
import os
import re
import sys


def top_words(params):
    """Count words, reporting progress on stderr as it goes."""
    stopwords = set(os.environ.get("WORDSTATS_STOPWORDS", "").split(","))
    words = [w for w in re.findall(r"[^\W\d_]+", params["text"].lower()) if w not in stopwords]
    counts = collections.Counter()
    step = max(1, len(words) // 4)
    for i, word in enumerate(words, 1):
        counts[word] += 1
        if i % step == 0:
            print(f"@progress {i / len(words):.2f} counted {i} words", file=sys.stderr, flush=True)
    n = params.get("n", 10)
    return {"words": [{"word": w, "count": c} for w, c in counts.most_common(n)], "total": len(words)}


def save_report(params):
    """Write the report into the granted directory (the only writable place besides /tmp)."""
    out_dir = os.environ["CORTEX_WRITE_PATHS"].split(os.pathsep)[0]
    report = top_words({"text": params["text"], "n": 20})
    path = os.path.join(out_dir, params["name"] + ".json")
    with open(path, "w") as fh:
        json.dump(report, fh)
    return {"path": path, "total": report["total"]}


TOOLS = {"top_words": top_words, "save_report": save_report}

if __name__ == "__main__":
    tool = sys.argv[-1]
    if tool not in TOOLS:
        sys.exit(f"unknown tool {tool!r}")
    json.dump(TOOLS[tool](json.load(sys.stdin)), sys.stdout)
