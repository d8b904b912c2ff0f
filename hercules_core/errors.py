"""Errors with stable codes: the same code travels over the wire and maps to one HTTP status."""

from __future__ import annotations

from typing import ClassVar


class HerculesError(Exception):
    """Base of every error Hercules reports to a caller."""

    code: ClassVar[str] = "internal"
    http_status: ClassVar[int] = 500
    by_code: ClassVar[dict[str, type["HerculesError"]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        HerculesError.by_code[cls.code] = cls

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.code

    @classmethod
    def from_code(cls, code: str, message: str) -> "HerculesError":
        return cls.by_code.get(code, HerculesError)(message)


class InvalidArgument(HerculesError):
    code = "invalid_argument"
    http_status = 400


class Unauthenticated(HerculesError):
    """The caller did not prove who it is: no or a wrong cluster secret on a native connection."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(HerculesError):
    """The path belongs to the master's internal tree (uploads in progress, the trash)."""

    code = "forbidden"
    http_status = 403


class TooLarge(HerculesError):
    """A request body the gateway buffers (JSON) is past its limit (``http_max_body``)."""

    code = "too_large"
    http_status = 413


class NotFound(HerculesError):
    code = "not_found"
    http_status = 404


class AlreadyExists(HerculesError):
    code = "already_exists"
    http_status = 409


class NotEmpty(HerculesError):
    code = "not_empty"
    http_status = 409


class NotADirectory(HerculesError):
    code = "not_a_directory"
    http_status = 409


class IsADirectory(HerculesError):
    code = "is_a_directory"
    http_status = 409


class Unavailable(HerculesError):
    """Too few live chunkservers, or a peer cannot be reached."""

    code = "unavailable"
    http_status = 503


class ResourceExhausted(Unavailable):
    """A limit that protects a role was reached (connections, pushed-data memory): retry later."""

    code = "resource_exhausted"
    http_status = 429


class TooFewChunkservers(Unavailable):
    """Fewer live chunkservers than the replication asked: retrying soon will not help."""

    code = "too_few_chunkservers"
    http_status = 503


class NoSpace(HerculesError):
    code = "no_space"
    http_status = 507


class StaleVersion(HerculesError):
    """A replica's chunk version differs from the one the caller expects."""

    code = "stale_version"
    http_status = 503


class ChecksumMismatch(HerculesError):
    """Stored bytes do not match their CRC32C: the replica is corrupt."""

    code = "checksum_mismatch"
    http_status = 502


class NotPrimary(HerculesError):
    """The chunkserver holds no valid lease for the chunk."""

    code = "not_primary"
    http_status = 503


class ChunkFull(HerculesError):
    """A record append does not fit: the chunk was padded, retry on the next chunk."""

    code = "chunk_full"
    http_status = 409


class ProtocolError(HerculesError):
    """A malformed, oversized or unexpected frame."""

    code = "protocol_error"
    http_status = 502


class ConfigError(HerculesError):
    code = "config_error"
    http_status = 500


class PluginError(HerculesError):
    code = "plugin_error"
    http_status = 500
