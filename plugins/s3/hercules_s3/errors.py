"""S3's error responses: XML bodies with S3's codes and statuses, from ours or from aiohttp's, those
the gateway's listener answers before any handler runs (``refusal``) included."""

from __future__ import annotations

import logging
import uuid
import xml.etree.ElementTree as ET

from aiohttp import web

from hercules_core.errors import HerculesError

log = logging.getLogger(__name__)

# Our error codes (hercules_core.errors) as S3 names them; the status stays S3's.
FROM_HERCULES = {
    "not_found": ("NoSuchKey", 404),
    "invalid_argument": ("InvalidArgument", 400),
    "forbidden": ("AccessDenied", 403),
    "already_exists": ("InvalidRequest", 409),
    "is_a_directory": ("InvalidRequest", 409),
    "not_a_directory": ("InvalidRequest", 409),
    "not_empty": ("BucketNotEmpty", 409),
    "too_few_chunkservers": ("ServiceUnavailable", 503),
    "unavailable": ("ServiceUnavailable", 503),
    "no_space": ("ServiceUnavailable", 503),
}
# The gateway listener's refusals (hercules_core.gateway.limits) by S3's code; the status stays ours.
REFUSALS = {"bad_request": "BadRequest", "header_too_large": "RequestHeaderSectionTooLarge",
            "uri_too_long": "InvalidURI", "too_many_connections": "SlowDown",
            "expectation_failed": "NotImplemented", "internal": "InternalError"}
# aiohttp's HTTP errors by status, when nothing more specific is known.
BY_STATUS = {404: "NoSuchKey", 405: "MethodNotAllowed", 411: "MissingContentLength", 413: "EntityTooLarge",
             417: "NotImplemented", 500: "InternalError"}


class S3Error(Exception):
    """An S3 error: ``code`` as S3 spells it, its HTTP status and a message for people."""

    def __init__(self, code: str, status: int, message: str, resource: str = "") -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.resource = code, status, message, resource


def no_such_bucket(bucket: str) -> S3Error:
    return S3Error("NoSuchBucket", 404, "The specified bucket does not exist", f"/{bucket}")


def no_such_key(bucket: str, key: str) -> S3Error:
    return S3Error("NoSuchKey", 404, "The specified key does not exist.", f"/{bucket}/{key}")


def invalid_argument(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def xml_error(err: S3Error, resource: str | None, head: bool = False) -> web.Response:
    """``<Error>`` with its Code, Message, Resource (if known) and a fresh RequestId; no body for a HEAD."""
    request_id = uuid.uuid4().hex[:16].upper()
    headers = {"x-amz-request-id": request_id}
    if head:  # no body: clients read the status alone
        return web.Response(status=err.status, headers=headers)
    root = ET.Element("Error")
    for tag, text in (("Code", err.code), ("Message", err.message), ("Resource", err.resource or resource),
                      ("RequestId", request_id)):
        if text:
            ET.SubElement(root, tag).text = text
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
    return web.Response(status=err.status, body=body, content_type="application/xml", headers=headers)


def error_response(request: web.Request, err: S3Error) -> web.Response:
    return xml_error(err, request.path, request.method == "HEAD")


def refusal(status: int, code: str, message: str) -> web.Response:
    """The gateway listener's refusal (a parser's, an unknown Expect, too many connections) as S3's XML."""
    return xml_error(S3Error(REFUSALS.get(code) or BY_STATUS.get(status, "InvalidRequest"), status, message), None)


def from_hercules(exc: HerculesError) -> S3Error:
    code, status = FROM_HERCULES.get(exc.code, ("InternalError", 500))
    return S3Error(code, status, exc.message)


@web.middleware
async def s3_errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every failure as S3's XML error, so S3 clients read the code they expect."""
    try:
        return await handler(request)
    except S3Error as err:
        return error_response(request, err)
    except HerculesError as exc:
        return error_response(request, from_hercules(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(request, S3Error(BY_STATUS.get(exc.status, "InvalidRequest"), exc.status, exc.reason))
    except (ConnectionResetError, web.RequestPayloadError) as exc:
        return error_response(request, S3Error("IncompleteBody", 400, f"request body could not be read: {exc}"))
    except Exception:
        if request.writer is not None and request.writer.output_size > 0:
            raise  # a response is under way: the connection is cut, as aiohttp does
        log.exception("S3 request %s %s failed", request.method, request.path)
        return error_response(request, S3Error("InternalError", 500, "We encountered an internal error. "
                                               "Please try again."))
