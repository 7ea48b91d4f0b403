"""docs/api.md tells mobile developers the routes the edge actually serves."""

from __future__ import annotations

from pathlib import Path

from mesh.edge.docs import BEGIN, END, route_table

API_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def test_the_route_table_in_the_api_guide_matches_the_descriptors() -> None:
    """The generated table is in docs/api.md verbatim; regenerate with python -m mesh.edge.docs."""
    text = API_GUIDE.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == route_table(), (
        "docs/api.md's route table is stale: paste the output of `python -m mesh.edge.docs`"
    )
