"""Model backends behind one protocol, and the code that loads model folders."""
