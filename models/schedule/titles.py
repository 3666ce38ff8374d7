"""The titles of the agreement's end, one per way it ends: catalog messages (English ids,
the Swedish in i18n/sv), translated by the engine in the agreement's language. The other
milestone titles are written where the engine plans them, `text(language, "…")`."""

from __future__ import annotations

from i18n import N_
from models.plan import EndingKind

ENDINGS: dict[EndingKind, str] = {
    EndingKind.expiry: N_("The agreement ends"),
    EndingKind.non_renewal: N_("The agreement ends (not renewed)"),
    EndingKind.not_extended: N_("The agreement ends (extension not approved)"),
    EndingKind.termination: N_("The agreement ends after termination"),
    EndingKind.withdrawal: N_("The agreement ends after a party withdrew"),
    EndingKind.rescission: N_("The agreement is rescinded"),
}
