#!/usr/bin/env python3
"""Puts a generated table into a doc between <!-- NAME:begin --> and <!-- NAME:end -->, or
appends a new section with TITLE and the markers when they are not there yet.

    python3 Benchmarks/write_section.py DOC NAME TITLE TABLE_FILE
"""
import sys

doc, name, title, table_file = sys.argv[1:5]
table = open(table_file).read()
text = open(doc).read()
begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
if begin in text and end in text:
    text = text[:text.index(begin) + len(begin)] + "\n" + table + text[text.index(end):]
else:
    text += f"\n## {title}\n\n" + begin + "\n" + table + end + "\n"
open(doc, "w").write(text)
