"""The libvirt driver: real QEMU/KVM guests (``[DEFAULT] compute_driver = libvirt``)."""
