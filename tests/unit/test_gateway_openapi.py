"""The OpenAPI document describes every route of the gateway, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from starlette.routing import Route
from starlette.testclient import TestClient

from anchorline.store.blobstore import FileBlobStore
from anchorline_gateway.app import Gateway, create_app
from anchorline_gateway.openapi import DOCUMENT
from anchorline_gateway.publisher import MemoryPublisher
from anchorline_gateway.reads import SqlJobReader

OPERATIONS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def gateway(tmp_path: Path, engine: Engine) -> Gateway:
    return Gateway(FileBlobStore(tmp_path), MemoryPublisher(), SqlJobReader(engine), {"k": "t"})


def served(gateway: Gateway) -> set[tuple[str, str]]:
    routes = [route for route in create_app(gateway).routes if isinstance(route, Route)]
    return {
        (route.path, method.lower())
        for route in routes
        for method in route.methods or ()
        if method != "HEAD"
    }


def documented() -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in OPERATIONS
    }


def test_every_route_is_documented_and_every_documented_route_served(gateway: Gateway) -> None:
    assert served(gateway) == documented()


def test_every_operation_documents_its_answers_and_path_parameters() -> None:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (path, method)
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_every_schema_reference_resolves() -> None:
    names = set(DOCUMENT["components"]["schemas"])

    def refs(node: object) -> set[str]:
        if isinstance(node, dict):
            found = {node["$ref"].rsplit("/", 1)[1]} if "$ref" in node else set()
            return found.union(*(refs(value) for value in node.values()))
        if isinstance(node, list):
            return set().union(*(refs(value) for value in node))
        return set()

    assert refs(DOCUMENT) <= names


def test_the_document_is_served_without_a_key(gateway: Gateway) -> None:
    with TestClient(create_app(gateway)) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")
    assert response.json() == DOCUMENT
