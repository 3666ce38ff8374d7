"""The archive package (e-arkiv) of an agreement: an E-ARK SIP as FGS Paketstruktur 2.0
describes one (archive/sip.py)."""
