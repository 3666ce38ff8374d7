"""The seal on the signing record: a PAdES signature made with pyHanko with the deployment's
seal certificate (an organisation certificate, e-sigill), and the check of a sealed record.

The seal is PAdES-B-B: no timestamp authority is reachable from here, so the signing time in
the seal is the one this service states (the CMS signing-time attribute), and a record whose
seal certificate has expired or been revoked no longer checks as trusted. A timestamp server
(PAdES-B-T, and B-LTA for archiving) would be the next step. The seal is a certification
signature that allows no change (DocMDP level 1), added as an incremental update with an
invisible signature field that has the print flag set, so a PDF/A claim stays as it was.

The key is one PKCS#12 file (.p12 or .pfx: how a certificate authority hands over an
organisation certificate with its key and chain) and its password, from the settings
AGREEMENTS_SEAL_P12 and AGREEMENTS_SEAL_PASSWORD. Without them, the service makes a
self-signed seal certificate of its own the first time it needs one, `seal.p12` under the
data folder: readable by the service's user only (0600) and without a password, like the
payload key beside it (models/codec.py). A self-signed seal shows any change to the record
to whoever trusts that certificate; it says nothing to anyone else about who sealed it.

Signing and checking are blocking (pyHanko runs its own event loop): from async code, call
them in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext

from models.config import Settings

log = logging.getLogger(__name__)

SEAL_FILE = "seal.p12"  # under the data folder: the self-signed default
FIELD = "Sigill"
SELF_SIGNED_NAME = "Avtalstjänsten (lokal provmiljö)"
SELF_SIGNED_YEARS = 10


@dataclass(frozen=True)
class SealKey:
    """The seal certificate with its key (as pyHanko signs with it) and its chain."""

    signer: signers.SimpleSigner
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()

    @property
    def subject(self) -> str:
        return subject_of(self.certificate)


def subject_of(certificate: x509.Certificate) -> str:
    """'CN=Avtalstjänsten (lokal provmiljö), O=Kommunen': the subject in its own order."""
    return ", ".join(
        f"{attribute.rfc4514_attribute_name}={attribute.value!s}"
        for attribute in certificate.subject
    )


def load_pkcs12(data: bytes, password: str | None = None) -> SealKey:
    """A seal key from the bytes of a PKCS#12 file; ValueError when it cannot be opened
    (wrong password, no key, no certificate)."""
    secret = password.encode() if password else None
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(data, secret)
    except ValueError as error:
        raise ValueError(f"the seal certificate file cannot be opened: {error}") from error
    if key is None or certificate is None:
        raise ValueError("the seal certificate file holds no key or no certificate")
    signer = signers.SimpleSigner.load_pkcs12_data(data, other_certs=[], passphrase=secret)
    return SealKey(signer=signer, certificate=certificate, chain=tuple(chain))


def load_seal_key(path: Path, password: str | None = None) -> SealKey:
    return load_pkcs12(path.read_bytes(), password)


def make_self_signed(path: Path, organisation: str = "Kommunen") -> SealKey:
    """The self-signed seal at `path`, made the first time (readable by this user only), read
    from there afterwards. Two processes making it at once end up with the same one: the
    file appears whole, and only once (a hard link, which never replaces a file)."""
    if path.exists():
        return load_seal_key(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # ECDSA P-256: as strong as RSA 3072, made in a moment; PDF readers validate it.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, SELF_SIGNED_NAME),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365 * SELF_SIGNED_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            # non-repudiation (content commitment): what PAdES validators expect of a seal
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    data = pkcs12.serialize_key_and_certificates(
        SELF_SIGNED_NAME.encode(), key, certificate, None, serialization.NoEncryption()
    )
    draft = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
        try:
            os.link(draft, path)
        except FileExistsError:  # another process made it first: theirs is the seal
            return load_seal_key(path)
    finally:
        draft.unlink(missing_ok=True)
    return load_pkcs12(data)


def seal_key_for(config: Settings) -> SealKey:
    """The deployment's seal: AGREEMENTS_SEAL_P12 (with AGREEMENTS_SEAL_PASSWORD) when set;
    otherwise the self-signed one under the data folder, made when missing."""
    if config.seal_p12 is not None:
        password = config.seal_password.get_secret_value() if config.seal_password else None
        return load_seal_key(config.seal_p12, password)
    if not config.embedded_temporal():
        log.warning(
            "AGREEMENTS_SEAL_P12 is not set: signing records are sealed with a self-signed "
            "certificate (%s)",
            config.data_dir / SEAL_FILE,
        )
    return make_self_signed(config.data_dir / SEAL_FILE, config.accessibility_organisation)


def _asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def seal(pdf: bytes, key: SealKey, reason: str, location: str) -> bytes:
    """`pdf` with the seal added as an incremental update: PAdES-B-B (SHA-256), a
    certification signature that permits no further change."""
    metadata = signers.PdfSignatureMetadata(
        field_name=FIELD,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=reason,
        location=location,
        certify=True,
        docmdp_permissions=fields.MDPPerm.NO_CHANGES,
    )
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    # pyHanko names itself the producer in the XMP metadata, and appends itself to the
    # document information's producer: PDF/A wants the two to say the same, so the
    # information's producer is left for pyHanko to write as it writes the XMP one.
    if "/Info" in writer.trailer:
        info_ref = writer.trailer.raw_get("/Info")
        info = info_ref.get_object()
        if "/Producer" in info:
            del info["/Producer"]
            writer.mark_update(info_ref)
    out = signers.PdfSigner(metadata, signer=key.signer).sign_pdf(writer)
    assert isinstance(out, io.BytesIO)  # no output stream given: pyHanko returns its own
    return out.getvalue()


@dataclass(frozen=True)
class Verdict:
    """What a check of a sealed record found. `valid` only when the seal's signature is
    intact and sound, its certificate leads to a trusted one, and nothing at all was added
    to the file after it was sealed. `reason` is a stable code when not valid: 'no-seal',
    'unreadable', 'changed' (a signed byte differs), 'bad-signature', 'untrusted',
    'added-after' (bytes or a revision after the seal); `detail` is the library's words."""

    valid: bool
    intact: bool = False
    trusted: bool = False
    whole_file: bool = False
    signer: str | None = None
    signed_at: dt.datetime | None = None
    reason: str | None = None
    detail: str | None = None


def verify(pdf: bytes, trusted: x509.Certificate | Sequence[x509.Certificate]) -> Verdict:
    """Check the seal on a record against the trusted certificate(s): the seal certificate
    itself, or the root of its chain. Revocation is not checked (offline: nothing is
    fetched). Never raises: a file that cannot be checked is not valid."""
    roots = [trusted] if isinstance(trusted, x509.Certificate) else list(trusted)
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        found = reader.embedded_signatures
        if not found:
            return Verdict(valid=False, reason="no-seal")
        context = ValidationContext(
            trust_roots=[_asn1(root) for root in roots], allow_fetching=False
        )
        status = validate_pdf_signature(found[0], context)
    except (SignatureValidationError, SigningError) as error:
        return Verdict(valid=False, reason="changed", detail=str(error))
    except Exception as error:  # a damaged file fails in many ways inside the parsers
        return Verdict(valid=False, reason="unreadable", detail=f"{type(error).__name__}: {error}")
    whole = status.coverage == SignatureCoverageLevel.ENTIRE_FILE and len(found) == 1
    signer = subject_of(x509.load_der_x509_certificate(status.signing_cert.dump()))
    if not status.intact:
        reason: str | None = "changed"
    elif not status.valid:
        reason = "bad-signature"
    elif not status.trusted:
        reason = "untrusted"
    elif not whole or not status.bottom_line:
        reason = "added-after"
    else:
        reason = None
    return Verdict(
        valid=reason is None,
        intact=status.intact,
        trusted=status.trusted,
        whole_file=whole,
        signer=signer,
        signed_at=status.signer_reported_dt,
        reason=reason,
        detail=None if reason is None else status.summary(),
    )
