#!/usr/bin/env bash
# Test services of the clinical outputs (called by `make test`): dciodvfy (Debian dicom3tools), the IOD
# validator of the SEG/SR tests, and two Orthanc servers with the DICOMweb plugin for the PACS round
# trip (tests/workflow/test_pacs_orthanc.py): "clinical" on 127.0.0.1:18042, "research" on 18043.
# Orthanc (GPL) is a test service only, never a dependency of covidct.
#
# Debian packages are installed only when COVIDCT_TEST_INSTALL=1 (CI sets it in .ci/run) and this is
# root with apt-get: `make test` never installs system packages on a user's machine unasked. Never
# fails: without the packages or a server the tests that need them skip and say why.
set -u
packages="orthanc orthanc-dicomweb dicom3tools"
base="${COVIDCT_ORTHANC_DIR:-/tmp/covidct-orthanc}"
plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
if ! command -v Orthanc >/dev/null 2>&1 || ! command -v dciodvfy >/dev/null 2>&1 || [ ! -f "$plugin" ]; then
    if [ "${COVIDCT_TEST_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "pacs: installing $packages (apt, COVIDCT_TEST_INSTALL=1)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $packages; } >/tmp/covidct-pacs-apt.log 2>&1 \
            || { echo "pacs: apt install failed (see /tmp/covidct-pacs-apt.log): the PACS and validator tests will skip"; exit 0; }
    else
        echo "pacs: $packages not all installed; set COVIDCT_TEST_INSTALL=1 as root with apt-get to install them" \
            "(the PACS and validator tests will skip)"
        exit 0
    fi
fi
up() {  # up NAME HTTP_PORT: answers when Orthanc's /system does
    python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$2/system', timeout=2)" \
        >/dev/null 2>&1
}
for server in clinical:18042:14242 research:18043:14243; do
    IFS=: read -r name http dimse <<<"$server"
    if up "$name" "$http"; then
        echo "pacs: Orthanc $name already up on $http"
        continue
    fi
    dir="$base/$name"
    rm -rf "$dir" && mkdir -p "$dir/db"
    cat >"$dir/orthanc.json" <<JSON
{
  "Name": "covidct-$name",
  "StorageDirectory": "$dir/db",
  "IndexDirectory": "$dir/db",
  "HttpPort": $http,
  "DicomPort": $dimse,
  "DicomAet": "COVIDCT_$(echo "$name" | tr a-z A-Z)",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "Plugins": ["$plugin"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
}
JSON
    setsid nohup Orthanc "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    for _ in $(seq 1 30); do
        up "$name" "$http" && break
        sleep 0.5
    done
    if up "$name" "$http"; then
        echo "pacs: Orthanc $name up on 127.0.0.1:$http (log $dir/orthanc.log)"
    else
        echo "pacs: Orthanc $name did not start (see $dir/orthanc.log): the PACS test will skip"
    fi
done
exit 0
