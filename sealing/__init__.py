"""The sealed signing record: when a signature round completes, one PDF with the agreement's
verification page, its terms and its documents (`record.build_record`), sealed with the
deployment's seal certificate so that any change to it shows (`seal.seal`, `seal.verify`)."""
