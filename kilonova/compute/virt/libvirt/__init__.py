"""The libvirt driver: real QEMU/KVM guests (``[compute] compute_driver = libvirt``)."""
