#!/bin/sh
# Sourced by the scenarios' init.sh (`. /vmtest/render-manifest.sh`): render_manifest SED-ARGS... fills
# /etc/encfs-init/manifest.tmpl with the given sed expressions into /etc/encfs-init/manifest.toml.
# On a kernel with no loadable modules (an empty modules.dep: the azure-uvm rig kernel, like Azure Linux's
# kernel-uvm, has everything encfs-init needs built in) the kernel_modules line is left out, as a manifest
# written for such a kernel would: encfs-init fails closed on a listed module the kernel does not have.
render_manifest() {
    if [ -s "/lib/modules/$(uname -r)/modules.dep" ]; then
        sed "$@" /etc/encfs-init/manifest.tmpl
    else
        sed -e '/^kernel_modules *=/d' "$@" /etc/encfs-init/manifest.tmpl
    fi > /etc/encfs-init/manifest.toml
}
