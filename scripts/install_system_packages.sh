#!/usr/bin/env bash
# System packages the test suite needs, from Debian's archive (idempotent: installs
# only what is missing). CI calls this before `make test`; run it once on a new machine.
#
#   chromium    the real-browser test of JupyterLab (tests/test_browser.py drives
#               /usr/bin/chromium through Playwright; Playwright's own browser
#               downloads are not used)
#   bubblewrap  the sandbox student code runs in while autograding
#               (course_tools/grading/sandbox.py, tests/test_sandbox.py, tests/test_adversarial.py)
#   postgresql  the server the PostgreSQL gradebook tests start on loopback
#               (tests/test_postgres.py starts its own server; the default cluster is unused)
#   util-linux  setpriv and prlimit, used by the sandbox and its tests (normally present);
#               unshare and setpriv run the learners of tests/test_exchange.py as their own users
#   passwd      useradd and userdel: tests/test_exchange.py creates two learner accounts and removes them
#   dataset-fashion-mnist  Fashion-MNIST under /usr/share/datasets/fashion-mnist: the training
#               images of the classification notebook (graders need them; learners' notebooks
#               fetch them otherwise) and the source of the grader's test split (DATA.md)
set -euo pipefail

PACKAGES=(
  chromium
  bubblewrap
  postgresql
  util-linux
  passwd
  dataset-fashion-mnist
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
