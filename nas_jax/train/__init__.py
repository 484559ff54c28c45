"""Training machinery shared by every stage: the epoch loop (`loop`) and the eval-mode
pass over a held-out split (`evaluate`)."""
