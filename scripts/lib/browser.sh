# Shared by the scripts: Debian's Chromium and ChromeDriver, for the browser tests of the
# issuer's pages (examples/src/browser.rs finds them through PORTCULLIS_CHROMIUM and
# PORTCULLIS_CHROMEDRIVER).

ensure_chromium() {
  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    echo "installing Chromium and ChromeDriver (Debian packages chromium, chromium-driver)" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  export PORTCULLIS_CHROMIUM=/usr/bin/chromium PORTCULLIS_CHROMEDRIVER=/usr/bin/chromedriver
}
