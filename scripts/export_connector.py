"""Write the Power Platform custom connector (connector/) from scripts/connector.py, or check it is current.

    .venv/bin/python scripts/export_connector.py             # regenerate connector/ (committed)
    .venv/bin/python scripts/export_connector.py --check     # exit 1 if connector/ differs from the generator
    .venv/bin/python scripts/export_connector.py --out /tmp/mdegw-connector --host func-mdegw-abc.azurewebsites.net \
        --client-id <connector app client id> --resource-uri api://<gateway API client id>   # one deployment's

Layout: apiDefinition.swagger.json + apiProperties.json (Entra ID) at the top, the same pair for the
function-key variant in api-key/ (Power Platform takes one security definition per connector).
Import either directory with `paconn create --api-def ... --api-prop ...` or in the maker portal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "connector"
REGENERATE = ".venv/bin/python scripts/export_connector.py"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from scripts.connector import CONNECTOR_HOST, connector_files

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory to write (default: connector/)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs")
    parser.add_argument("--host", default=CONNECTOR_HOST, help="the function app's host name (default: a "
                        "placeholder the importer replaces)")
    parser.add_argument("--client-id", default="", help="Entra ID variant: the connector's own app registration")
    parser.add_argument("--resource-uri", default=None, help="Entra ID variant: the gateway's App ID URI "
                        "(api://<client id>); without it, each connection asks for it")
    args = parser.parse_args(argv)
    files = connector_files(host=args.host, client_id=args.client_id, resource_uri=args.resource_uri)
    out: Path = args.out
    if args.check:
        stale = [name for name, text in files.items()
                 if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
        for name in stale:
            print(f"{out / name} is not what shared/http/openapi.py generates; run: {REGENERATE}", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
