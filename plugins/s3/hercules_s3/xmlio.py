"""XML in and out, with xml.etree: S3's namespace on what we send, any namespace on what we read."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from email.utils import formatdate
from typing import Any

from aiohttp import web

from hercules_s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def element(tag: str, *children: ET.Element, text: Any = None, ns: bool = False) -> ET.Element:
    node = ET.Element(tag, {"xmlns": NS} if ns else {})
    if text is not None:
        node.text = str(text).lower() if isinstance(text, bool) else str(text)
    node.extend(children)
    return node


def fields(tag: str, **values: Any) -> ET.Element:
    """``<tag><Name>value</Name>...</tag>``, skipping values that are None."""
    return element(tag, *(element(k, text=v) for k, v in values.items() if v is not None))


def response(root: ET.Element, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    root.set("xmlns", NS)
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
    return web.Response(status=status, body=body, content_type="application/xml", headers=headers)


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML", 400, "The XML you provided was not well-formed or did not "
                      "validate against our published schema.") from None


def children(node: ET.Element, name: str) -> Iterable[ET.Element]:
    return (c for c in node if local(c.tag) == name)


def child_text(node: ET.Element, name: str, default: str | None = None) -> str | None:
    for c in children(node, name):
        return c.text or ""
    return default
