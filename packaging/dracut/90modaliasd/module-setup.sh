#!/bin/bash
# dracut module: modaliasd loads the drivers in the initramfs instead of udevd's module loading.
# Install as /usr/lib/dracut/modules.d/90modaliasd/; enable with add_dracutmodules+=" modaliasd ".

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
    # The compiled alias index, built for the initramfs's own module directory. dracut runs
    # depmod only after every module's install(), so run it here first; should a later dracut
    # module add kernel modules, the index is stale and the daemon compiles it at boot.
    depmod -a -b "$initdir" "$kernel" \
        && modaliasd -q compile --root "$initdir" --kver "$kernel" \
        || dwarn "modaliasd: could not compile the index; it will be built at boot"
    inst_hook pre-udev 10 "$moddir/modaliasd-coldplug.sh"
    inst_hook cleanup 90 "$moddir/modaliasd-stop.sh"
}
