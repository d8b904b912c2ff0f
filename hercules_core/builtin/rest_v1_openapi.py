"""The OpenAPI 3.1 fragment describing route set ``rest-v1`` (its paths and schemas).

Kept true by ``tests/test_openapi.py``: schemathesis sends what this allows to a live gateway and
fails on a 5xx or on any answer (status, content type, body, headers) that this does not describe.
"""

from __future__ import annotations

from typing import Any

from hercules_core.config import MAX_FILE_SIZE

JSON = "application/json"
BINARY = "application/octet-stream"
INT64_MAX = (1 << 63) - 1


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


# Every path this pattern allows is legal (no `.` or `..` segment, names well under 255 bytes); the
# gateway also takes longer ones (4096 bytes, names of 255) and answers 400 for anything else.
_PATH_TEXT = {"type": "string", "pattern": "^/+([^/\\x00.][^/\\x00]{0,50}/*)*$", "maxLength": 1000,
              "description": "an absolute path; repeated `/` are folded"}
_INT = {"type": "integer", "minimum": 0, "maximum": INT64_MAX}
_FILE_OFFSET = {"type": "integer", "minimum": 0, "maximum": MAX_FILE_SIZE}
_TIME = {"type": "number", "description": "seconds since the epoch"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
_METRICS_URL = {"type": "string", "description": "where Prometheus scrapes this role (empty when its metrics are off)"}

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": _object({"code": {"type": "string"}, "message": {"type": "string"}})}),
    "FileInfo": _object({"name": {"type": "string"}, "path": {"type": "string"}, "is_dir": {"type": "boolean"},
                         "size": {"type": "integer", "minimum": 0}, "chunk_count": {"type": "integer", "minimum": 0},
                         "replication": {"type": "integer"}, "created": _TIME, "modified": _TIME}),
    "Listing": _object({"path": {"type": "string"}, "entries": {"type": "array", "items": _ref("FileInfo")},
                        "next_cursor": _NULLABLE_TEXT}),
    "ChunkLocation": _object({
        "handle": {"type": "integer"}, "index": {"type": "integer"}, "version": {"type": "integer"},
        "exists": {"type": "boolean"}, "replicas": {"type": "array", "items": {"type": "string"}},
        "primary": _NULLABLE_TEXT, "secondaries": {"type": "array", "items": {"type": "string"}},
        "lease_expires": {"type": ["number", "null"]}}),
    "Chunkserver": _object({
        "server_id": {"type": "string"}, "address": {"type": "string"},
        "state": {"type": "string", "description": "`alive`, `suspect` or `dead`, from the phi-accrual detector"},
        "capacity_bytes": {"type": "integer"}, "used_bytes": {"type": "integer"},
        "chunk_count": {"type": "integer"}, "last_heartbeat_age": {"type": "number"}, "phi": {"type": "number"},
        "metrics_url": _METRICS_URL}),
    "Cluster": _object({"chunkservers": {"type": "array", "items": _ref("Chunkserver")},
                        "chunk_size": {"type": "integer"}, "replication": {"type": "integer"},
                        "under_replicated": {"type": "integer"}, "pending_deletions": {"type": "integer"},
                        "missing_chunks": {"type": "integer"}, "master_metrics_url": _METRICS_URL,
                        "gateway_metrics_url": _METRICS_URL}),
    "TrashEntry": _object({"original_path": {"type": "string"}, "deleted_at": _TIME, "purge_at": _TIME,
                           "is_dir": {"type": "boolean"}, "size": {"type": "integer"}}),
    "Trash": _object({"entries": {"type": "array", "items": _ref("TrashEntry")}, "next_cursor": _NULLABLE_TEXT}),
    "Health": _object({"status": {"type": "string"}, "master": {"type": "string"}},
                      {"chunkservers_alive": {"type": "integer"}, "error": {"type": "string"}}),
}

# Every failure answers ``Error`` JSON; which statuses an operation can give is listed per operation.
_ERRORS = {400: "bad input", 401: "no valid bearer token (when the gateway has HERCULES_AUTH_FILE)",
           403: "the internal tree /.hercules, or outside the token's scope", 404: "no such file, directory or chunk",
           409: "conflict: exists, not empty, not a directory, is a directory", 413: "the body is too large",
           414: "the request line is too long", 416: "a range the file cannot satisfy",
           429: "too many connections from this address, or past the token's request rate (Retry-After)",
           431: "a header is too long",
           502: "every replica failed its checksum",
           503: "too few chunkservers or the master unreachable", 507: "no space left"}
_COMMON = (400, 401, 403, 404, 409, 413, 502, 503, 507)
# What the listener itself may answer to any request, before a handler sees it (gateway/limits.py).
_TRANSPORT = (400, 414, 429, 431)


def _op(summary: str, ok: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None, errors: tuple[int, ...] = _COMMON, **extra: Any) -> dict[str, Any]:
    responses = {**ok, **{str(code): _json(_ref("Error"), _ERRORS[code])
                          for code in sorted({*errors, *_TRANSPORT}) if str(code) not in ok}}
    op: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _query(name: str, schema: dict[str, Any], required: bool = False, description: str = "") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _json_body(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _object(required, optional)}}}


_PATH_Q = _query("path", _PATH_TEXT, required=True)
_BOOL_TEXT = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
_RECURSIVE = _query("recursive", _BOOL_TEXT, description="a directory with its contents")
_PAGE = [_query("limit", _INT, description="one page of at most this many entries (0: all)"),
         _query("cursor", {"type": "string"}, description="`next_cursor` of the page before")]
_BYTES_BODY = {"required": True, "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}}}
_BYTES_OK = {"description": "the bytes", "content": {BINARY: {"schema": {"type": "string", "format": "binary"}}}}
_FILE = _json(_ref("FileInfo"), "the entry")
_SOURCE_TARGET = {"source": _PATH_TEXT, "target": _PATH_TEXT}
_FILES_PATH = {"name": "path", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1},
               "description": "the file's path below the root"}
_LINK_FROM_BODY = {"operationId": "fileinfo", "parameters": {"path": "$response.body#/path"}}


def paths() -> dict[str, Any]:
    files = "/api/v1/files/{path}"
    return {
        "/health": {"get": _op("Whether the gateway reaches the master", {
            "200": _json(_ref("Health"), "the master answers"),
            "503": _json(_ref("Health"), "the master is unreachable")}, errors=(), operationId="health")},
        "/api/v1/mkdir": {"post": _op("Make a directory and its parents", {"201": {
            **_FILE, "links": {"ListCreated": {"operationId": "list", "parameters": {"path": "$response.body#/path"}}}}},
            body=_json_body({"path": _PATH_TEXT}), operationId="mkdir")},
        "/api/v1/create": {"post": _op("Create an empty file", {"201": {**_FILE, "links": {
            "StatCreated": _LINK_FROM_BODY,
            "DeleteCreated": {"operationId": "delete", "parameters": {"path": "$response.body#/path"}}}}},
            body=_json_body({"path": _PATH_TEXT}, {"replication": {"type": "integer"}}), operationId="create")},
        "/api/v1/delete": {"delete": _op("Move a file or directory into the trash", {
            "200": _json(_object({"deleted": {"type": "string"}}), "deleted")},
            params=[_PATH_Q, _RECURSIVE], operationId="delete")},
        "/api/v1/rename": {"patch": _op("Rename a file or directory", {
            "200": _json(_object(_SOURCE_TARGET), "renamed")},
            body=_json_body(_SOURCE_TARGET, {"overwrite": {"type": "boolean"}}), operationId="rename")},
        "/api/v1/list": {"get": _op("List a directory", {"200": _json(_ref("Listing"), "its entries")},
                                    params=[_PATH_Q, _RECURSIVE, *_PAGE], operationId="list")},
        "/api/v1/fileinfo": {"get": _op("An entry's size, chunks, replication and times", {"200": _FILE},
                                        params=[_PATH_Q], operationId="fileinfo")},
        "/api/v1/read": {"get": _op("Bytes of a file", {"200": _BYTES_OK}, params=[
            _PATH_Q, _query("offset", _FILE_OFFSET),
            _query("length", {"type": "integer", "minimum": -1, "maximum": MAX_FILE_SIZE},
                   description="-1: to the end")], operationId="read")},
        "/api/v1/write": {"post": _op("Write bytes at an offset", {"200": _json(_object(
            {"path": {"type": "string"}, "written": {"type": "integer"}}), "written")},
            params=[_PATH_Q, _query("offset", _FILE_OFFSET)], body=_BYTES_BODY, operationId="write")},
        "/api/v1/append": {"patch": _op("Append one record; the primary picks its offset", {"200": _json(_object(
            {"path": {"type": "string"}, "offset": {"type": "integer"}, "length": {"type": "integer"}}), "appended")},
            params=[_PATH_Q], body=_BYTES_BODY, operationId="append")},
        "/api/v1/chunk/handle": {"get": _op("The chunk at an index of a file", {"200": {
            **_json(_ref("ChunkLocation"), "its location"), "links": {"Servers": {
                "operationId": "chunk_servers", "parameters": {"handle": "$response.body#/handle"}}}}},
            params=[_PATH_Q, _query("index", _INT, required=True)], operationId="chunk_handle")},
        "/api/v1/chunk/servers": {"get": _op("A chunk's replicas, primary and lease", {
            "200": _json(_ref("ChunkLocation"), "its location")},
            params=[_query("handle", {"type": "integer", "minimum": 1, "maximum": INT64_MAX}, required=True)],
            operationId="chunk_servers")},
        "/api/v1/cluster": {"get": _op("Chunkservers, under-replicated and missing chunks", {
            "200": _json(_ref("Cluster"), "the cluster")}, errors=(401, 403, 503), operationId="cluster")},
        "/api/v1/snapshot": {"post": _op("Copy-on-write snapshot of a file or tree", {"201": _FILE},
                                         body=_json_body(_SOURCE_TARGET), operationId="snapshot")},
        "/api/v1/undelete": {"post": _op("Bring an entry back from the trash", {"200": _FILE},
                                         body=_json_body({"path": _PATH_TEXT}), operationId="undelete")},
        "/api/v1/trash": {"get": _op("Deleted entries and when they are purged", {
            "200": _json(_ref("Trash"), "the trash")}, params=_PAGE, operationId="trash"),
            "delete": _op("Empty the trash now (nothing in it can be restored afterwards)", {
                "200": _json(_object({"purged_chunks": {"type": "integer", "minimum": 0}}), "chunks freed")},
                operationId="purge_trash")},
        files: {
            "parameters": [_FILES_PATH],
            "put": _op("Upload a whole file, parents created", {"201": _FILE}, params=[
                _query("overwrite", _BOOL_TEXT), _query("replication", _INT)], body=_BYTES_BODY,
                operationId="put_file"),
            "get": _op("Download a file (one `Range` honoured)", {
                "200": _BYTES_OK, "206": {**_BYTES_OK, "description": "the range asked for"}},
                params=[{"name": "Range", "in": "header", "required": False, "schema": {"type": "string"}}],
                errors=(*_COMMON, 416), operationId="get_file"),
            "head": _op("A file's size and modification time", {
                "200": {"description": "headers only"},
                **{str(code): {"description": _ERRORS[code]} for code in sorted({*_COMMON, *_TRANSPORT})}},  # no body
                errors=(), operationId="head_file"),
            "delete": _op("Move a file (or with `recursive` a tree) into the trash", {
                "200": _json(_object({"deleted": {"type": "string"}}), "deleted")}, params=[_RECURSIVE],
                operationId="delete_file"),
        },
    }


def openapi() -> dict[str, Any]:
    """The fragment ``RouteSetSpec.openapi`` returns: ``paths`` and ``components``."""
    return {"paths": paths(), "components": {"schemas": SCHEMAS}}
