"""hypervisor_kvm: the workload in a QEMU/KVM guest with its own kernel (Kata-class).

Not built yet (issue 5): this package registers no backend, so `rt.plugin=hypervisor_kvm`
fails with "unknown plugin" rather than pretending.
"""
