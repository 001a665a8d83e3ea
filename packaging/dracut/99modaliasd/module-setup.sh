#!/bin/bash
# dracut module: modaliasd loads the drivers in the initramfs instead of udevd's module loading.
# Install as /usr/lib/dracut/modules.d/99modaliasd/; enable with add_dracutmodules+=" modaliasd ".
#
# Why 99: the saved index must be compiled from the image's final module directory, and dracut
# calls each module's install() in directory order. Every module dracut ships that adds kernel
# modules sorts before 99modaliasd; what dracut itself adds after the last module (the
# drivers/add_drivers/force_drivers/filesystems lists, then modules.builtin* and modules.order,
# then depmod) install() does first, the same way, so that dracut's own later pass changes
# nothing. A module of another package that still adds kernel modules after this one only makes
# the index stale: the daemon sees that and compiles it at boot.

check() {
    require_binaries modaliasd || return 1
    # Only on request: udev-rules is dracut's default and both would load the same drivers.
    return 255
}

depends() {
    return 0
}

install() {
    inst_binary modaliasd /usr/sbin/modaliasd
    inst_dir /etc/modaliasd/rules.d
    inst_multiple -o /etc/modaliasd/rules.d/*.rules /usr/lib/modaliasd/rules.d/*.rules
    inst_multiple -o /etc/modprobe.d/*.conf /usr/lib/modprobe.d/*.conf /lib/modprobe.d/*.conf
    inst_hook pre-udev 10 "$moddir/modaliasd-coldplug.sh"
    inst_hook cleanup 90 "$moddir/modaliasd-stop.sh"
    [[ $no_kernel == yes ]] && return 0

    # As dracut.sh does after the last module (instmods skips what is already there).
    # shellcheck disable=SC2086
    {
        [[ $drivers ]] && hostonly='' instmods $drivers
        [[ -n ${add_drivers// /} ]] && hostonly='' instmods $add_drivers
        [[ $force_drivers ]] && hostonly='' instmods $force_drivers
        [[ $filesystems ]] && hostonly='' instmods $filesystems
    }
    local _f
    for _f in modules.builtin modules.builtin.alias modules.builtin.modinfo modules.order; do
        [[ -e $srcmods/$_f ]] && inst_simple "$srcmods/$_f" "/lib/modules/$kernel/$_f"
    done
    if [[ ! -d $initdir/lib/modules/$kernel ]]; then
        dinfo "modaliasd: no kernel modules in the image, no index"
        return 0
    fi
    # shellcheck disable=SC2015 # either step failing leaves the index to the boot
    depmod -a -b "$initdir" "$kernel" \
        && modaliasd -q compile --root "$initdir" --kver "$kernel" \
        || dwarn "modaliasd: could not compile the index; it will be built at boot"
}
